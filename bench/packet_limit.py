"""A broker whose packet size limit is below edged's messages, or a healthy broker that restarts: an MqttPublisher on
a local Mosquitto with `max_packet_size --limit` (300 by default; 0: none) for --seconds, publishing as the daemon
does with faces in view (a state every 0.5 s, stats every 10 s), given one event that does not fit (emotion_changed,
~315 bytes) and one that does at the start of every run. --restarts restarts the broker that many times, evenly
spread; --daemon-restarts starts a new publisher on the same state directory (outbox) that many times. Prints how
often it connected, what a subscriber received and what edged took as the broker's limit. A figure, not a test.

    .venv/bin/python bench/packet_limit.py --seconds 30 [--protocol 3.1.1] [--limit 0 --restarts 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from clones import SCORES, kiosk
from mosquitto import Mosquitto

from edged.faces import Track, TrackEvent
from edged.outbox import Outbox
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    parser.add_argument("--limit", type=int, default=300, help="the broker's max_packet_size; 0: none")
    parser.add_argument("--restarts", type=int, default=0, help="broker restarts, evenly spread")
    parser.add_argument("--daemon-restarts", type=int, default=0, help="new publishers on the same state directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp), extra=(f"max_packet_size {args.limit}",) if args.limit else ()).start()
        port = broker.port
        received: list[str] = []
        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="packet-limit-watcher")
        connects = 0
        try:
            sub.on_message = lambda c, u, m: received.append(m.topic.rsplit("/", 1)[1])
            sub.on_connect = lambda c, u, f, rc, p: c.subscribe("edged/#", 1)
            sub.reconnect_delay_set(0.1, 0.5)
            sub.connect("127.0.0.1", port)
            sub.loop_start()
            big = Track(id=1, box=(10, 20, 64, 64), scores=SCORES, emotion="happy", first_seen_utc=1.7e9,
                        last_seen_utc=1.7e9 + 3)
            small = Track(id=2, box=(1, 2, 3, 4), scores=SCORES, emotion="sad", first_seen_utc=1.7e9,
                          last_seen_utc=1.7e9)
            runs = args.daemon_restarts + 1
            restart_at = [args.seconds * (i + 1) / (args.restarts + 1) for i in range(args.restarts)]
            started = time.monotonic()
            for run in range(runs):
                box = Outbox.open(Path(tmp) / "state", max_messages=1000, max_bytes=10**6, max_age_s=86400)
                pub = MqttPublisher(MqttSettings(host="127.0.0.1", port=port, protocol=args.protocol), "kiosk-1", None,
                                    "m", "0", outbox=box)
                pub.start()
                pub.event(TrackEvent("emotion_changed", big, 1.7e9, previous_emotion="neutral"))
                pub.event(TrackEvent("face_appeared", small, 1.7e9))
                stop = threading.Event()
                driver = threading.Thread(target=kiosk, args=(pub, stop), daemon=True)
                driver.start()
                end = started + args.seconds * (run + 1) / runs
                while (now := time.monotonic()) < end:
                    if restart_at and now - started >= restart_at[0]:
                        restart_at.pop(0)
                        broker.stop()
                        broker.start()
                    stop.wait(min(0.1, end - now))
                stop.set()
                driver.join()
                link = pub.link
                limit, too_large, disconnects = link.limit, getattr(pub, "_too_large", 0), link.disconnects
                backlog = pub.backlog
                pub.close(1.0)
                print(f"  run {run + 1}: {disconnects} disconnects, limit taken as {limit} bytes, {too_large} messages "
                      f"not sent as too large, {backlog} events left in the outbox")
            connects = broker.log().count("as edged-kiosk-1 ")
        finally:
            sub.loop_stop()
            broker.stop()
    print(f"MQTT {args.protocol}, max_packet_size {args.limit or 'none'}, {args.restarts} broker restarts, "
          f"{args.daemon_restarts} daemon restarts, {args.seconds:.0f} s: {connects} connections, "
          f"{received.count('events')} events, {received.count('status')} status, {received.count('state')} state and "
          f"{received.count('stats')} stats messages received")


if __name__ == "__main__":
    main()

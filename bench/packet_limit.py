"""A broker whose packet size limit is below one of edged's events: an MqttPublisher on a local Mosquitto with
`max_packet_size 300`, given one event that does not fit (emotion_changed, ~315 bytes) and one that does, for
--seconds. Prints how often it connected and what a subscriber received. A figure, not a test.

    .venv/bin/python bench/packet_limit.py --seconds 30 [--protocol 3.1.1]
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edged.faces import Track, TrackEvent
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings

SCORES = {"angry": 0.05, "disgust": 0.0, "fear": 0.05, "happy": 0.7, "sad": 0.05, "surprise": 0.05, "neutral": 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        log = Path(tmp) / "mosquitto.log"
        (Path(tmp) / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
                                          f"max_packet_size 300\nlog_dest file {log}\nlog_type all\n")
        broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", f"{tmp}/m.conf"],
                                  stderr=subprocess.DEVNULL)
        received: list[str] = []
        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="packet-limit-watcher")
        try:
            time.sleep(0.5)
            sub.on_message = lambda c, u, m: received.append(m.topic.rsplit("/", 1)[1])
            sub.on_connect = lambda c, u, f, rc, p: c.subscribe("edged/#", 1)
            sub.connect("127.0.0.1", port)
            sub.loop_start()
            pub = MqttPublisher(MqttSettings(host="127.0.0.1", port=port, protocol=args.protocol), "kiosk-1", None,
                                "m", "0")
            pub.start()
            big = Track(id=1, box=(10, 20, 64, 64), scores=SCORES, emotion="happy", first_seen_utc=1.7e9,
                        last_seen_utc=1.7e9 + 3)
            small = Track(id=2, box=(1, 2, 3, 4), scores=SCORES, emotion="sad", first_seen_utc=1.7e9,
                          last_seen_utc=1.7e9)
            pub.event(TrackEvent("emotion_changed", big, 1.7e9, previous_emotion="neutral"))
            pub.event(TrackEvent("face_appeared", small, 1.7e9))
            threading.Event().wait(args.seconds)
            connects = log.read_text(errors="replace").count("as edged-kiosk-1 ")
            backlog = pub.backlog
            pub.close(1.0)
        finally:
            sub.loop_stop()
            broker.terminate()
            broker.wait()
    print(f"MQTT {args.protocol}, max_packet_size 300, {args.seconds:.0f} s: {connects} connections, "
          f"{received.count('events')} events and {received.count('status')} status messages received, "
          f"{backlog} events left in the outbox")


if __name__ == "__main__":
    main()

"""Two kiosks cloned from one image: two MqttPublishers with one device id (so one client id) on a local Mosquitto
for --seconds, with edged's default reconnect settings, each publishing as the daemon does with faces in view: a
state (QoS 0) every 0.5 s, stats every 10 s. Prints how often the broker saw the id connect (each connect knocks the
other off, and `status` flips), per minute, and what edged counted. A figure, not a test.

    .venv/bin/python bench/clones.py --seconds 120 [--protocol 3.1.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mosquitto import Mosquitto

from edged.faces import Track
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings

SCORES = {"angry": 0.05, "disgust": 0.0, "fear": 0.05, "happy": 0.7, "sad": 0.05, "surprise": 0.05, "neutral": 0.1}
FIGURES = {"fps": 15.0, "latency_ms": {s: {"p50": 1.0, "p95": 2.0} for s in ("decode", "detect", "classify", "track",
                                                                              "publish")},
           "frames": 1, "frames_dropped": 0, "faces_seen": 1, "queue_depth": 0, "uptime_s": 1.0}


def kiosk(pub: MqttPublisher, stop: threading.Event) -> None:
    """What the pipeline hands the publisher at 10 fps with one or two faces moving: state every frame (the
    publisher sends one every 0.5 s), stats every 10 s."""
    n = 0
    pub.stats(FIGURES)
    while not stop.wait(0.1):
        n += 1
        tracks = [Track(id=t, box=(10 + n % 50, 20, 64, 64), scores=SCORES, emotion="happy", first_seen_utc=1.7e9,
                        last_seen_utc=1.7e9 + n) for t in ((1, 2) if n % 200 < 100 else (1,))]
        pub.state(tracks, time.time())
        if n % 100 == 0:
            pub.stats({**FIGURES, "frames": n})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp)).start() as broker:
        port = broker.port
        mqtt = MqttSettings(host="127.0.0.1", port=port, protocol=args.protocol)
        clones = [MqttPublisher(mqtt, "raspberrypi", None, "m", "0") for _ in range(2)]
        stop = threading.Event()
        drivers = [threading.Thread(target=kiosk, args=(pub, stop), daemon=True) for pub in clones]
        for pub, driver in zip(clones, drivers, strict=True):
            pub.start()
            driver.start()
        stop.wait(args.seconds)
        stop.set()
        for driver in drivers:
            driver.join()
        connects = broker.log().count("as edged-raspberrypi ")
        counted = [getattr(pub, "link", None) for pub in clones]
        too_large = [getattr(pub, "_too_large", 0) for pub in clones]
        for pub in clones:
            pub.close(1.0)
    print(f"MQTT {args.protocol}, {args.seconds:.0f} s: the shared client id connected {connects} times "
          f"({connects / args.seconds * 60:.1f} per minute)")
    if all(counted):
        print("edged counted: " + ", ".join(f"clone {i + 1}: {link.takeovers} takeovers, {link.disconnects} "
                                            f"disconnects, next wait {link.backoff_s:.0f} s, limit taken as "
                                            f"{link.limit} bytes, {too_large[i]} messages not sent as too large"
                                            for i, link in enumerate(counted)))


if __name__ == "__main__":
    main()

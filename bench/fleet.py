"""Fleet-scale test: N simulated kiosks publishing with edged's own MqttPublisher to one local Mosquitto, and a
subscriber that checks every device's events `seq` stream and measures end-to-end latency.

    .venv/bin/python bench/fleet.py --devices 200 --seconds 30

Each kiosk is one MqttPublisher (one paho client, its own client id and device id, so one network thread), spread
over worker processes of --per-process kiosks: paho's network loop uses select(), which cannot watch a file
descriptor above 1023, and each client holds three (its socket and a wake-up socket pair), so one process holds
about 330 clients at most. At the default rates a kiosk sends what a busy one does: 1 event/s (QoS 1),
2 states/s (the 0.5 s throttle of a kiosk with faces in view) and stats every 10 s. The subscriber (one paho
client in this process, like a dashboard) takes `<prefix>/+/#`, folds every events `seq` into edged.fleet's
SeqStream and takes latency as receive time minus the event's `ts` (same clock, millisecond `ts`).

Printed: messages per second offered and delivered, events lost / duplicated / late, latency p50/p95/p99/max,
the broker's and the simulator's CPU use and the load average (the machine may be shared). "sustained" means
every event arrived, the subscriber received >= 99% of what was offered, and latency p95 stayed under 1 s; the
line also says when the simulator could not offer 95% of the nominal rate (N x the per-kiosk rates), in which case
that N was not tested at full rate.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mosquitto import Mosquitto, free_port

from edged import __version__
from edged.faces import Track, TrackEvent
from edged.fleet import SeqStream
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings

SCORES = {"angry": 0.05, "disgust": 0.0, "fear": 0.05, "happy": 0.6, "sad": 0.1, "surprise": 0.1, "neutral": 0.1}
STATS = {
    "fps": 15.0,
    "latency_ms": {s: {"p50": 1.0, "p95": 2.0} for s in ("decode", "detect", "classify", "track", "publish")},
    "frames": 0, "frames_dropped": 0, "faces_seen": 0, "queue_depth": 0, "uptime_s": 0.0,
}


def make_publisher(port: int, device_id: str) -> MqttPublisher:
    """The one place kiosks are built, so a change to MqttPublisher's constructor is one edit here."""
    # state_interval_s=0: every state() the simulator makes is published, so its rate is --state-rate exactly.
    settings = MqttSettings(host="127.0.0.1", port=port, reconnect_min_s=0.1, reconnect_max_s=1.0, state_interval_s=0)
    return MqttPublisher(settings, device_id, None, "emotions-bench", __version__,
                         thermal_path=Path("/nonexistent"))


def start_broker(workdir: Path, port: int, max_queued: int, nodelay: bool) -> Mosquitto:
    """A started Mosquitto (tests/mosquitto.py) tuned for the benchmark; stop it with .stop()."""
    return Mosquitto(workdir, port=port, log=False, extra=(
        # A subscriber that falls behind has at most this many QoS 1 messages queued before the broker drops
        # them (the default is 1000); the figure is printed with the results.
        f"max_queued_messages {max_queued}",
        # Mosquitto leaves Nagle's algorithm on by default: with the subscriber's delayed ACKs, small messages then
        # wait up to ~40 ms. A dashboard broker wants it off (docs/fleet.md).
        f"set_tcp_nodelay {'true' if nodelay else 'false'}",
    )).start()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kiosk_worker(port: int, devices: list[str], seconds: float, rates: dict[str, float], ready: Any,
                 results: Any) -> None:
    """One process simulating `devices`: connect all, wait for the others, publish at `rates` for `seconds`."""
    pubs = {device: make_publisher(port, device) for device in devices}
    for pub in pubs.values():
        pub.start()
    deadline = time.monotonic() + 60
    for device, pub in pubs.items():
        if not pub.wait_connected(max(0.1, deadline - time.monotonic())):
            raise SystemExit(f"{device} did not connect")
    ready.wait()
    start = time.monotonic()
    # Every kiosk runs the same schedule, shifted by a random phase so the fleet does not publish in lockstep.
    rng = np.random.default_rng(os.getpid())
    phases = {device: float(rng.uniform(0, 1)) for device in devices}
    tracks = {device: [Track(id=1, box=(100, 80, 120, 120), scores=SCORES, emotion="happy",
                             first_seen_utc=time.time(), last_seen_utc=time.time())] for device in devices}
    sent = {device: {"events": 0, "state": 0, "stats": 0} for device in devices}
    step = 1.0 / max(rates["events"], rates["state"], 1.0) / 2
    next_due = {(device, kind): start + phases[device] / max(rate, 1e-9) for device in devices
                for kind, rate in rates.items() if rate > 0}
    stop = threading.Event()
    while not stop.wait(step):
        now = time.monotonic()
        if now - start >= seconds:
            break
        for (device, kind), due in next_due.items():
            if now < due:
                continue
            pub = pubs[device]
            if kind == "events":
                pub.event(TrackEvent("face_appeared", tracks[device][0], time.time()))
            elif kind == "state":
                pub.state(tracks[device], time.time())
            else:
                pub.stats(STATS)
            sent[device][kind] += 1
            next_due[(device, kind)] = due + 1.0 / rates[kind]
    for pub in pubs.values():
        pub.close(timeout=10)  # waits for the QoS 1 acknowledgements
    results.put({"sent": sent, "cpu_s": time.process_time(), "elapsed_s": time.monotonic() - start})


class FleetSubscriber:
    """A dashboard-like subscriber: every events seq checked, latency per event, a count per topic."""

    def __init__(self, port: int, prefix: str = "edged") -> None:
        self.streams: dict[str, SeqStream] = {}
        self.latencies_ms: list[float] = []
        self.received = {"events": 0, "state": 0, "stats": 0, "status": 0}
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-fleet-subscriber",
                                  protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/+/#", qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise SystemExit("the subscriber could not subscribe")

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        now = time.time()
        _, device, kind = message.topic.split("/")
        with self.lock:
            self.received[kind] = self.received.get(kind, 0) + 1
            if kind == "status":
                return
            if kind != "events":
                return
            event = json.loads(message.payload)
            self.streams.setdefault(device, SeqStream()).add(event["seq"], event["ts"])
            sent_at = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
            self.latencies_ms.append((now - sent_at) * 1000)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(devices: int, seconds: float, processes: int, rates: dict[str, float], max_queued: int,
        nodelay: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="edged-fleet-") as tmp:
        port = free_port()
        broker = start_broker(Path(tmp), port, max_queued, nodelay)
        try:
            subscriber = FleetSubscriber(port)
            names = [f"kiosk-{i:05d}" for i in range(devices)]
            processes = min(processes, devices)
            shares = [names[i::processes] for i in range(processes)]
            ctx = mp.get_context("spawn")  # no fork of a process that already runs paho's threads
            ready, results = ctx.Barrier(processes + 1), ctx.Queue()
            workers = [ctx.Process(target=kiosk_worker, args=(port, share, seconds, rates, ready, results))
                       for share in shares]
            for w in workers:
                w.start()
            ready.wait(timeout=120)  # every kiosk connected
            broker_cpu0, t0 = cpu_seconds(broker.pid), time.monotonic()
            with subscriber.lock:
                before = sum(v for k, v in subscriber.received.items() if k != "status")  # the connect-time states
            outcomes = [results.get(timeout=seconds + 120) for _ in workers]
            for w in workers:
                w.join(30)
            publish_s = max(o["elapsed_s"] for o in outcomes)
            sent: dict[str, dict[str, int]] = {}
            for o in outcomes:
                sent.update(o["sent"])
            expected_events = sum(s["events"] for s in sent.values())
            drain_deadline = time.monotonic() + 30
            while time.monotonic() < drain_deadline:
                with subscriber.lock:
                    if subscriber.received["events"] >= expected_events:
                        break
                time.sleep(0.1)
            time.sleep(0.5)  # stragglers: duplicates would arrive now
            broker_cpu = cpu_seconds(broker.pid) - broker_cpu0
            wall = time.monotonic() - t0
            subscriber.close()
        finally:
            broker.stop()

    lost = late = duplicates = 0
    for device, counts in sent.items():
        stream = subscriber.streams.get(device, SeqStream())
        arrived = 0 if stream.last is None else stream.last
        lost += stream.lost + (counts["events"] - arrived)  # gaps inside, and a missing tail
        late += stream.late
        duplicates += stream.duplicates
    offered = sum(sum(c.values()) for c in sent.values())
    delivered = sum(v for k, v in subscriber.received.items() if k != "status") - before
    lat = np.array(subscriber.latencies_ms) if subscriber.latencies_ms else np.zeros(1)
    p50, p95, p99 = (float(x) for x in np.percentile(lat, [50, 95, 99]))
    return {
        "devices": devices, "processes": len(workers), "seconds": round(publish_s, 1),
        "offered_msgs": offered, "offered_msgs_per_s": round(offered / publish_s, 1),
        "delivered_msgs": delivered, "delivered_msgs_per_s": round(delivered / publish_s, 1),
        "events_sent": expected_events, "events_lost": lost, "events_duplicated": duplicates, "events_late": late,
        "latency_ms": {"p50": round(p50, 1), "p95": round(p95, 1), "p99": round(p99, 1), "max": round(float(lat.max()), 1)},
        "broker_cpu_pct": round(100 * broker_cpu / wall, 1),
        "simulator_cpu_pct": round(100 * sum(o["cpu_s"] for o in outcomes) / wall, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "max_queued_messages": max_queued, "tcp_nodelay": nodelay,
        "nominal_msgs_per_s": round(devices * sum(rates.values()), 1),
        # The simulator itself may not keep up (it shares the machine with the broker): then N was not tested at
        # the nominal rate, whatever the broker did.
        "simulator_kept_up": offered >= 0.95 * devices * sum(rates.values()) * publish_s,
        "sustained": lost == 0 and delivered >= 0.99 * offered and p95 < 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[200], help="fleet sizes to run, one after another")
    parser.add_argument("--seconds", type=float, default=30, help="publishing time per run (default 30)")
    parser.add_argument("--per-process", type=int, default=250,
                        help="kiosks per worker process (default 250; paho's select() loop caps it near 330)")
    parser.add_argument("--event-rate", type=float, default=1.0, help="events per second per kiosk (default 1)")
    parser.add_argument("--state-rate", type=float, default=2.0, help="states per second per kiosk (default 2)")
    parser.add_argument("--stats-interval", type=float, default=10.0, help="seconds between stats (default 10)")
    parser.add_argument("--max-queued", type=int, default=1000,
                        help="mosquitto max_queued_messages per client (default 1000, Mosquitto's own)")
    parser.add_argument("--nagle", action="store_true",
                        help="leave Mosquitto's set_tcp_nodelay at its default (false) instead of true")
    parser.add_argument("--json", action="store_true", help="one JSON line per run instead of text")
    args = parser.parse_args()
    rates = {"events": args.event_rate, "state": args.state_rate, "stats": 1.0 / args.stats_interval}
    for n in args.devices:
        r = run(n, args.seconds, math.ceil(n / args.per_process), rates, args.max_queued, nodelay=not args.nagle)
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        lat = r["latency_ms"]
        print(f"N={r['devices']:>5} ({r['processes']} procs, {r['seconds']} s): offered {r['offered_msgs_per_s']} msg/s, "
              f"delivered {r['delivered_msgs_per_s']} msg/s; events {r['events_sent']} sent, {r['events_lost']} lost, "
              f"{r['events_duplicated']} duplicated, {r['events_late']} late; latency ms p50 {lat['p50']} "
              f"p95 {lat['p95']} p99 {lat['p99']} max {lat['max']}; CPU broker {r['broker_cpu_pct']}% "
              f"simulator {r['simulator_cpu_pct']}% (of one core; {r['cpus']} cores, load {r['load_avg_1m']}); "
              f"set_tcp_nodelay {'true' if r['tcp_nodelay'] else 'false'}; "
              f"sustained: {'yes' if r['sustained'] else 'NO'}"
              + ("" if r["simulator_kept_up"] else f" (but the simulator offered less than 95% of the nominal "
                 f"{r['nominal_msgs_per_s']} msg/s: this N was not tested at full rate)"), flush=True)


if __name__ == "__main__":
    main()

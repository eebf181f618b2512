"""Soak: the daemon (`edged run`, a subprocess) on an endless camera for N minutes; prints its memory and its
outbox over time, and a summary. Not a test: run it by hand, e.g. before a release.

    .venv/bin/python bench/soak.py --minutes 30 [--interval 30] [--busy] [--outage-every 0] [--clip FILE] [--cpu N]

The camera is a clip (default samples/faces.mp4, 15 fps; samples/faces-30fps.mp4 for 30 fps) looped forever at its
own frame rate, served as MJPEG over HTTP (as many IP cameras serve it) by this script with the stdlib, and read by
the daemon as a live `http://` source. --cpu N pins the daemon to core N (and this script to the others), which is
how "30 fps on one core" is checked over a long run. A throwaway
Mosquitto (the `mosquitto` binary) on a free port is the broker. --busy tunes the tracker so that every frame
with a face yields events (about 18 a second instead of a few a minute), to stress the outbox.
--outage-every M stops the broker for M/2 minutes every M minutes, so the spool fills and drains.

Prints every --interval seconds: elapsed time, the daemon's RSS (VmRSS, MB), its CPU use since the last sample (% of
one core), fps and frames dropped from its own retained stats, the outbox's rows and its files' size (database +
WAL, kB); then start, end and maximum RSS and the growth, frames processed and dropped. The growth is measured from the
first sample after a warm-up minute (imports, model, first allocations), as the goal is about steady state.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "faces.mp4"
TICKS = os.sysconf("SC_CLK_TCK")
MODEL = ROOT / "edged" / "models" / "emotions-int8.tflite"
BUSY_TRACKER = {"EDGED_TRACKER__IOU_THRESHOLD": "0.99", "EDGED_TRACKER__MIN_HITS": "1",
                "EDGED_TRACKER__MAX_MISSING_S": "0.01"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_clip_forever(clip: Path) -> tuple[ThreadingHTTPServer, str, float]:
    """The clip as an endless MJPEG stream at its own frame rate; returns the server, its URL and the rate."""
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
    jpegs = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    capture.release()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            start, i = time.monotonic(), 0
            try:
                while True:
                    jpeg = jpegs[i % len(jpegs)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(jpeg), jpeg))
                    i += 1
                    time.sleep(max(0.0, start + i / fps - time.monotonic()))
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg", fps


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                               f"user {getpass.getuser()}\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.config)], stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class StatsListener:
    """The daemon's latest retained stats message, read from the broker like a dashboard would."""

    def __init__(self, port: int, topic: str) -> None:
        self.latest: dict = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="soak-listener")
        self.client.on_connect = lambda c, *_: c.subscribe(topic)
        self.client.on_message = lambda _c, _u, msg: self.latest.update(json.loads(msg.payload))
        self.client.reconnect_delay_set(0.5, 2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()


def outbox(state: Path) -> tuple[int, float]:
    """(rows, kB of the database and its WAL); (0, 0) before the daemon made it."""
    path = state / "outbox.sqlite3"
    if not path.exists():
        return 0, 0.0
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()) / 1024
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        rows = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        db.close()
    except sqlite3.Error:
        rows = -1
    return rows, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the growth baseline (default 60)")
    parser.add_argument("--busy", action="store_true", help="tracker tuned for many events (stresses the outbox)")
    parser.add_argument("--outage-every", type=float, default=0.0, metavar="MINUTES",
                        help="stop the broker for half of every such period (default: never)")
    parser.add_argument("--clip", type=Path, default=CLIP, help="video looped as the camera (default samples/faces.mp4)")
    parser.add_argument("--cpu", type=int, metavar="N", help="pin the daemon to core N, this script to the others")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edged-soak-"))
    daemon_cpus = others = None
    if args.cpu is not None:
        daemon_cpus = {args.cpu}
        others = (os.sched_getaffinity(0) - daemon_cpus) or daemon_cpus
        os.sched_setaffinity(0, others)  # the camera server, the broker and this loop stay off the daemon's core
    server, url, fps = serve_clip_forever(args.clip)
    broker = Broker(work)
    broker.start()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env.update({"EDGED_CAMERA__SOURCE": url, "EDGED_MODEL__PATH": str(MODEL), "EDGED_MQTT__HOST": "127.0.0.1",
                "EDGED_MQTT__PORT": str(broker.port), "EDGED_STATE_DIR": str(work / "state"),
                "EDGED_DEVICE_ID": "soak", "EDGED_LOG_LEVEL": "WARNING", "EDGED_MQTT__STATS_INTERVAL_S": "5",
                **(BUSY_TRACKER if args.busy else {})})
    log = (work / "daemon.log").open("w")
    pin = (lambda: os.sched_setaffinity(0, daemon_cpus)) if daemon_cpus else None
    daemon = subprocess.Popen([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT, stdout=log, stderr=log,
                              preexec_fn=pin)
    listener = StatsListener(broker.port, "edged/soak/stats")
    print(f"soak: {args.minutes:g} min, camera {url} ({args.clip.name} looped at {fps:g} fps), broker :{broker.port}, "
          f"busy={args.busy}, outage every {args.outage_every:g} min, daemon on cores "
          f"{sorted(daemon_cpus) if daemon_cpus else 'any'}, work dir {work}", flush=True)
    print(f"{'elapsed_s':>9} {'rss_mb':>8} {'cpu_%':>6} {'fps':>6} {'frames':>8} {'dropped':>8} {'outbox_rows':>11} "
          f"{'outbox_kb':>9} broker", flush=True)

    start = time.monotonic()
    last_cpu = (start, 0.0)
    samples: list[tuple[float, float]] = []
    broker_up = True
    try:
        while (elapsed := time.monotonic() - start) < args.minutes * 60:
            if daemon.poll() is not None:
                print(f"soak: the daemon exited with {daemon.returncode}; see {work / 'daemon.log'}")
                return 1
            if args.outage_every > 0:
                want_up = (elapsed / 60) % args.outage_every < args.outage_every / 2
                if want_up != broker_up:
                    (broker.start if want_up else broker.stop)()
                    broker_up = want_up
            rss = rss_mb(daemon.pid)
            now, cpu = time.monotonic(), cpu_seconds(daemon.pid)
            cpu_pct = 100 * (cpu - last_cpu[1]) / max(1e-9, now - last_cpu[0])
            last_cpu = (now, cpu)
            rows, size = outbox(work / "state")
            samples.append((elapsed, rss))
            st = listener.latest
            print(f"{elapsed:9.0f} {rss:8.1f} {cpu_pct:6.1f} {st.get('fps', 0):6.1f} {st.get('frames', 0):8d} "
                  f"{st.get('frames_dropped', 0):8d} {rows:11d} {size:9.1f} {'up' if broker_up else 'down'}", flush=True)
            time.sleep(max(0.0, args.interval - (time.monotonic() - start - elapsed)))
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        listener.close()
        broker.stop()
        server.shutdown()
        log.close()

    steady = [rss for t, rss in samples if t >= args.warmup] or [rss for _, rss in samples]
    print(f"summary: RSS first {samples[0][1]:.1f} MB, after warm-up {steady[0]:.1f} MB, end {samples[-1][1]:.1f} MB, "
          f"max {max(r for _, r in samples):.1f} MB; growth after warm-up {samples[-1][1] - steady[0]:+.1f} MB "
          f"(goal: under 10 MB); daemon exit status {daemon.returncode} on SIGTERM", flush=True)
    st = listener.latest
    if st:
        print(f"summary: {st['frames']} frames processed, {st['frames_dropped']} dropped, {st.get('faces_seen', 0)} faces "
              f"seen; last stats: fps {st['fps']}, latency p50/p95 ms {json.dumps(st.get('latency_ms', {}))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

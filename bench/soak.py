"""Soak: the daemon (`edged run`, a subprocess) on an endless camera for N minutes; prints its memory and its
outbox over time, and a summary. Not a test: run it by hand, e.g. before a release.

    .venv/bin/python bench/soak.py --minutes 30 [--interval 30] [--busy] [--outage-every 0]

The camera is the sample clip looped forever at its own 15 fps, served as MJPEG over HTTP (as many IP cameras
serve it) by this script with the stdlib, and read by the daemon as a live `http://` source. A throwaway
Mosquitto (the `mosquitto` binary) on a free port is the broker. --busy tunes the tracker so that every frame
with a face yields events (about 18 a second instead of a few a minute), to stress the outbox.
--outage-every M stops the broker for M/2 minutes every M minutes, so the spool fills and drains.

Prints every --interval seconds: elapsed time, the daemon's RSS (VmRSS, MB), the outbox's rows and its files'
size (database + WAL, kB); then start, end and maximum RSS and the growth. The growth is measured from the
first sample after a warm-up minute (imports, model, first allocations), as the goal is about steady state.
"""

from __future__ import annotations

import argparse
import getpass
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

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "faces.mp4"
MODEL = ROOT / "models" / "emotions-int8.tflite"
BUSY_TRACKER = {"EDGED_TRACKER__IOU_THRESHOLD": "0.99", "EDGED_TRACKER__MIN_HITS": "1",
                "EDGED_TRACKER__MAX_MISSING_S": "0.01"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_clip_forever(fps: float = 15.0) -> tuple[ThreadingHTTPServer, str]:
    """The clip as an endless MJPEG stream; returns the server and its URL."""
    capture = cv2.VideoCapture(str(CLIP))
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
    return server, f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"


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
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edged-soak-"))
    server, url = serve_clip_forever()
    broker = Broker(work)
    broker.start()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env.update({"EDGED_CAMERA__SOURCE": url, "EDGED_MODEL__PATH": str(MODEL), "EDGED_MQTT__HOST": "127.0.0.1",
                "EDGED_MQTT__PORT": str(broker.port), "EDGED_STATE_DIR": str(work / "state"),
                "EDGED_DEVICE_ID": "soak", "EDGED_LOG_LEVEL": "WARNING", "EDGED_MQTT__STATS_INTERVAL_S": "5",
                **(BUSY_TRACKER if args.busy else {})})
    log = (work / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT, stdout=log, stderr=log)
    print(f"soak: {args.minutes:g} min, camera {url}, broker :{broker.port}, busy={args.busy}, "
          f"outage every {args.outage_every:g} min, work dir {work}", flush=True)
    print(f"{'elapsed_s':>9} {'rss_mb':>8} {'outbox_rows':>11} {'outbox_kb':>9} broker", flush=True)

    start = time.monotonic()
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
            rows, size = outbox(work / "state")
            samples.append((elapsed, rss))
            print(f"{elapsed:9.0f} {rss:8.1f} {rows:11d} {size:9.1f} {'up' if broker_up else 'down'}", flush=True)
            time.sleep(max(0.0, args.interval - (time.monotonic() - start - elapsed)))
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        broker.stop()
        server.shutdown()
        log.close()

    steady = [rss for t, rss in samples if t >= args.warmup] or [rss for _, rss in samples]
    print(f"summary: RSS first {samples[0][1]:.1f} MB, after warm-up {steady[0]:.1f} MB, end {samples[-1][1]:.1f} MB, "
          f"max {max(r for _, r in samples):.1f} MB; growth after warm-up {samples[-1][1] - steady[0]:+.1f} MB "
          f"(goal: under 10 MB); daemon exit status {daemon.returncode} on SIGTERM", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Faults with real parts: the daemon (`edged run` in a subprocess) on the sample clip, a real Mosquitto that is
stopped and restarted, a daemon SIGKILLed mid-stream, a broker that is down at start; and a real HTTP camera
stream (MJPEG, served by the stdlib, read by OpenCV) that goes away and comes back.

To get many events out of a 12 s clip, the tracker is tuned so that every detection starts a new track
(IoU threshold 0.99, one hit, gone after 10 ms): about 216 events per play (a face_appeared and a face_left per
frame with a face). Each test prints sent / received / lost / duplicated and the recovery time (pytest -s).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from media import ROOT, SAMPLE_CLIP, require_model
from mosquitto import Mosquitto, free_port, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edged.camera.capture import Capture
from edged.camera.opencv import OpenCVSource
from edged.camera.queue import FrameQueue
from edged.outbox import FILE_NAME
from edged.pipeline import build
from edged.settings import load_settings

DEVICE = "faulty"
EVENTS = f"edged/{DEVICE}/events"
BUSY_TRACKER = {"EDGED_TRACKER__IOU_THRESHOLD": "0.99", "EDGED_TRACKER__MIN_HITS": "1",
                "EDGED_TRACKER__MAX_MISSING_S": "0.01"}


class PersistentSubscriber:
    """Subscribes to the device's events at QoS 1 with a persistent session (fixed id, clean_session false), so
    the broker keeps what arrives while it is away; reconnects by itself. Records every seq, duplicates too."""

    def __init__(self, port: int, client_id: str = "fault-watcher") -> None:
        self.seqs: list[tuple[float, int]] = []  # (monotonic arrival, seq)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=paho.MQTTv311)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(EVENTS, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "could not subscribe"

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.seqs.append((time.monotonic(), json.loads(msg.payload)["seq"]))

    def received(self) -> list[int]:
        with self._lock:
            return [seq for _, seq in self.seqs]

    def first_after(self, moment: float) -> float | None:
        with self._lock:
            return next((t for t, _ in self.seqs if t >= moment), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_daemon(port: int, state: Path, realtime: bool = True, **extra: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
           "EDGED_CAMERA__REALTIME": str(realtime).lower(), "EDGED_MQTT__HOST": "127.0.0.1",
           "EDGED_MQTT__PORT": str(port), "EDGED_DEVICE_ID": DEVICE, "EDGED_STATE_DIR": str(state),
           "EDGED_MQTT__RECONNECT_MIN_S": "0.2", "EDGED_MQTT__RECONNECT_MAX_S": "0.5", "EDGED_LOG_LEVEL": "INFO",
           "EDGED_OUTBOX__FLUSH_TIMEOUT_S": "10", **BUSY_TRACKER, **extra}
    return subprocess.Popen([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finish(daemon: subprocess.Popen, timeout: float = 30) -> str:
    try:
        _, stderr = daemon.communicate(timeout=timeout)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    return stderr


def spooled_now(state: Path) -> int:
    """Events in the spool, 0 while the daemon has not made it yet (for polling)."""
    if not (state / FILE_NAME).exists():
        return 0
    try:
        return spooled(state)[1]
    except sqlite3.Error:  # the file is there, its tables not yet
        return 0


def spooled(state: Path) -> tuple[int, int]:
    """(last events seq given out, events still in the spool), read from the daemon's own file."""
    db = sqlite3.connect(state / FILE_NAME)
    try:
        row = db.execute("SELECT seq FROM seqs WHERE topic = 'events'").fetchone()
        return (row[0] if row else 0), db.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        db.close()


def report(name: str, sent: int, received: list[int], **figures: float) -> int:
    """Print the figures the issue's closing note quotes; returns how many seqs were lost. (Duplicates are
    QoS 1 redeliveries, allowed by the contract: subscribers dedupe on (device, seq).)"""
    lost = len(set(range(1, sent + 1)) - set(received))
    duplicated = len(received) - len(set(received))
    extra = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    print(f"\n[{name}] sent={sent} received={len(set(received))} lost={lost} duplicated={duplicated} {extra}")
    return lost


@pytest.fixture
def persistent_broker(tmp_path: Path):
    with Mosquitto(tmp_path / "mosquitto", persistent=True).start() as running:
        yield running


def test_broker_stopped_and_restarted_mid_stream_loses_no_event(persistent_broker, tmp_path):
    state = tmp_path / "state"
    watcher = PersistentSubscriber(persistent_broker.port)
    daemon = start_daemon(persistent_broker.port, state)
    try:
        wait_until(lambda: len(watcher.received()) >= 20, timeout=30, what="the first events")
        persistent_broker.stop()
        down_at = time.monotonic()
        time.sleep(3.0)  # the clip plays on: events pile up in the spool
        persistent_broker.start()
        up_at = time.monotonic()
        stderr = finish(daemon)
        assert daemon.returncode == 0, stderr
        sent, left = spooled(state)
        assert left == 0, "everything was acknowledged before the daemon exited"
        wait_until(lambda: set(range(1, sent + 1)) <= set(watcher.received()), timeout=10, what="every seq")
    finally:
        if daemon.poll() is None:
            daemon.kill()
        watcher.close()
    first_back = watcher.first_after(up_at)
    lost = report("broker restart", sent, watcher.received(), outage_s=up_at - down_at,
                              first_event_after_restart_s=(first_back or up_at) - up_at)
    assert sent > 100 and lost == 0
    assert stderr.count("lost the MQTT connection") == 1 and stderr.count("is back") == 1


def test_daemon_sigkilled_mid_stream_and_restarted_loses_no_event(persistent_broker, tmp_path):
    # Killed while the broker is away, so the spool holds events paho never delivered: the restart must send them.
    state = tmp_path / "state"
    watcher = PersistentSubscriber(persistent_broker.port)
    daemon = start_daemon(persistent_broker.port, state)
    again = None
    try:
        wait_until(lambda: len(watcher.received()) >= 40, timeout=30, what="the first events")
        persistent_broker.stop()
        wait_until(lambda: spooled(state)[1] >= 20, timeout=10, what="events piling up in the spool")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(5)
        killed_sent, killed_left = spooled(state)
        persistent_broker.start()
        restarted_at = time.monotonic()
        again = start_daemon(persistent_broker.port, state, realtime=False)  # replays the spool, then the clip
        stderr = finish(again)
        assert again.returncode == 0, stderr
        sent, left = spooled(state)
        wait_until(lambda: set(range(1, sent + 1)) <= set(watcher.received()), timeout=10, what="every seq")
    finally:
        for process in (daemon, again):
            if process is not None and process.poll() is None:
                process.kill()
        watcher.close()
    lost = report("SIGKILL", sent, watcher.received(), sent_before_kill=killed_sent,
                              in_spool_at_kill=killed_left,
                              first_event_after_restart_s=(watcher.first_after(restarted_at) or restarted_at)
                              - restarted_at)
    assert killed_left >= 20 and sent > killed_sent and left == 0 and lost == 0
    assert f"{killed_left} events waiting from before" in stderr


def test_broker_down_at_start_then_everything_is_delivered(tmp_path):
    state = tmp_path / "state"
    broker = Mosquitto(tmp_path / "mosquitto", persistent=True).start()
    try:
        PersistentSubscriber(broker.port).close()  # the session exists before the broker goes away
        broker.stop()
        daemon = start_daemon(broker.port, state)
        wait_until(lambda: spooled_now(state) > 0, timeout=30, what="events waiting in the spool")
        assert daemon.poll() is None, "the daemon runs without a broker"
        broker.start()
        up_at = time.monotonic()
        watcher = PersistentSubscriber(broker.port)
        try:
            stderr = finish(daemon)
            assert daemon.returncode == 0, stderr
            sent, left = spooled(state)
            wait_until(lambda: set(range(1, sent + 1)) <= set(watcher.received()), timeout=10, what="every seq")
            first = watcher.first_after(up_at)
        finally:
            watcher.close()
    finally:
        broker.stop()
    lost = report("broker down at start", sent, watcher.received(),
                              first_event_after_broker_up_s=(first or up_at) - up_at)
    assert sent > 100 and left == 0 and lost == 0
    assert "cannot reach MQTT broker" in stderr


class MjpegServer:
    """A real MJPEG-over-HTTP camera (multipart/x-mixed-replace, as many IP cameras serve), written with the stdlib
    and read by OpenCV's FFmpeg backend: `stop()` drops every viewer and closes the port, as a camera losing power
    does; `start()` serves again on the same port. It loops the sample clip's first 30 frames at 30 fps."""

    def __init__(self) -> None:
        import cv2

        capture = cv2.VideoCapture(str(SAMPLE_CLIP))
        self.jpegs = []
        while len(self.jpegs) < 30:
            ok, image = capture.read()
            assert ok
            self.jpegs.append(cv2.imencode(".jpg", image)[1].tobytes())
        capture.release()
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()
        self._stalled = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def stall(self) -> None:
        """Keep every connection open and accept new ones, but send nothing more: a camera whose encoder hung."""
        self._stalled.set()

    def start(self) -> MjpegServer:
        jpegs, stopping, stalled = self.jpegs, threading.Event(), self._stalled
        self._stopping = stopping
        stalled.clear()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                while stalled.is_set() and not stopping.is_set():  # not even the headers
                    stopping.wait(0.05)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not stopping.is_set():
                        if stalled.is_set():
                            stopping.wait(0.05)
                            continue
                        jpeg = jpegs[i % len(jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                         % (len(jpeg), jpeg))
                        i += 1
                        stopping.wait(1 / 30)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._stopping.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def mjpeg_camera():
    server = MjpegServer()
    yield server
    server.stop()


def test_http_camera_that_goes_away_is_reopened_and_logged_once_each(mjpeg_camera, caplog):
    caplog.set_level(logging.DEBUG, logger="edged.camera.capture")
    mjpeg_camera.start()
    source = OpenCVSource("url", mjpeg_camera.url)
    source.open()
    queue, stop = FrameQueue(2), threading.Event()
    capture = Capture(source, queue, stop, backoff_min_s=0.05, backoff_max_s=0.2)
    capture.start()
    try:
        assert queue.get(5.0) is not None and capture.camera_ok
        mjpeg_camera.stop()
        lost_at = time.monotonic()
        wait_until(lambda: not capture.camera_ok, what="the loss to be noticed")
        wait_until(lambda: sum("still unavailable" in r.getMessage() for r in caplog.records) >= 3, timeout=10,
                   what="several failed reopen attempts")
        assert not capture.camera_ok and not capture.hung  # reopened with backoff: the watchdog stays fed
        mjpeg_camera.start()
        wait_until(lambda: capture.camera_ok, timeout=10, what="the camera back")
        back_at = time.monotonic()
        while queue.get(0.01) is not None:  # frames from before the loss
            pass
        assert queue.get(5.0) is not None, "frames flow again"
    finally:
        stop.set()
        capture.join(5)
        source.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    attempts = [r for r in caplog.records if "still unavailable" in r.getMessage()]
    print(f"\n[camera loss] down {back_at - lost_at:.2f} s, {len(attempts) + 1} reopen attempts, recovered")
    assert capture.reconnects == 1 and len(attempts) >= 3
    assert sum("camera lost" in m for m in messages) == 1 and sum("camera back" in m for m in messages) == 1


def test_daemon_starts_without_its_http_camera_and_picks_it_up_when_it_appears(mjpeg_camera):
    from test_pipeline import RecordingPublisher

    settings = load_settings({"EDGED_CAMERA__SOURCE": mjpeg_camera.url, "EDGED_CAMERA__REOPEN_BACKOFF_MAX_S": "0.2",
                              "EDGED_MODEL__PATH": str(require_model())})
    publisher, stop = RecordingPublisher(), threading.Event()
    pipeline = build(settings, lambda model_id: publisher, stop)  # the camera is not there: no exception
    result: list[dict] = []
    runner = threading.Thread(target=lambda: result.append(pipeline.run()))
    runner.start()
    try:
        wait_until(lambda: pipeline.capture.failed_reopens >= 1, timeout=10, what="a failed reopen of the absent camera")
        assert pipeline.frames == 0 and not pipeline.stats()["camera_ok"]
        assert not pipeline.capture.hung  # so the systemd watchdog is fed while waiting: no restart loop
        assert "camera lost, reopening" in pipeline.status_line()
        mjpeg_camera.start()
        wait_until(lambda: pipeline.frames >= 10, timeout=15, what="frames from the camera")
    finally:
        stop.set()
        runner.join(15)
    assert result and result[0]["camera_ok"] and result[0]["camera_reconnects"] == 1
    assert publisher.closed

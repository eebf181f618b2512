"""What the daemon publishes while its camera is down, and the watchdog rule (see edged.camera for the budget).

Real parts: an HTTP MJPEG camera (stdlib server, read by OpenCV's FFmpeg) that goes away or stalls, a real
Mosquitto and the `edged run` daemon for what a dashboard sees, a real AF_UNIX socket standing in for systemd.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from media import ROOT, SAMPLE_CLIP, require_model
from mosquitto import Subscriber, free_port, wait_until
from test_faults import MjpegServer
from test_notify import Manager, SilentPublisher

from edged.camera import CALL_TIMEOUT_S, HUNG_AFTER_S
from edged.camera.opencv import STREAM_TIMEOUT_MS, OpenCVSource
from edged.classifier import EmotionClassifier
from edged.detector import HaarDetector
from edged.errors import CameraError
from edged.notify import Notifier
from edged.pipeline import Pipeline, build
from edged.settings import load_settings
from edged.tracker import Tracker

DEVICE = "outage"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _payloads(sub: Subscriber, name: str) -> list[dict]:
    return [json.loads(m.payload) for m in sub.on(f"edged/{DEVICE}/{name}")]


def test_a_camera_lost_with_a_face_in_view_empties_the_state_and_the_fps_while_it_is_down(broker, tmp_path):
    """Fault 1 and 2: face_left stamped at the last frame, an empty state and fps 0 arrive while the camera is
    still down (it never comes back in this test), with camera_ok false in stats."""
    camera = MjpegServer().start()
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": camera.url,
           "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(broker.port), "EDGED_DEVICE_ID": DEVICE,
           "EDGED_MQTT__STATS_INTERVAL_S": "0.5", "EDGED_CAMERA__REOPEN_BACKOFF_MAX_S": "0.5"}
    sub = Subscriber(broker.port, f"edged/{DEVICE}/#")
    daemon = subprocess.Popen([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        sub.wait_for(lambda _: any(e["type"] == "face_appeared" for e in _payloads(sub, "events")), timeout=60,
                     what="face_appeared")
        sub.wait_for(lambda _: any(s["fps"] > 5 for s in _payloads(sub, "stats")), timeout=30, what="fps > 5")
        camera.stop()  # the camera loses power with the face in view
        lost_at = time.time()
        sub.wait_for(lambda _: any(e["type"] == "face_left" for e in _payloads(sub, "events")), timeout=30,
                     what="face_left while the camera is down")
        sub.wait_for(lambda _: _payloads(sub, "state")[-1]["faces"] == [], timeout=10, what="an empty state")
        sub.wait_for(lambda _: any(not s["camera_ok"] and s["fps"] == 0 for s in _payloads(sub, "stats")),
                     timeout=30, what="stats with camera_ok false and fps 0")
        assert daemon.poll() is None, "the daemon waits for its camera"
    finally:
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=30)
        sub.close()
        camera.stop()
    assert daemon.returncode == 0, stderr
    left = [e for e in _payloads(sub, "events") if e["type"] == "face_left"]
    appeared = [e for e in _payloads(sub, "events") if e["type"] == "face_appeared"]
    assert len(left) == len(appeared) == 1 and left[0]["track"] == appeared[0]["track"]
    assert _epoch(left[0]["ts"]) <= lost_at, "stamped when the face was last seen, not when the loss was noticed"
    assert "camera lost" in stderr and "recovered" not in left[0]


def _pipeline(source, notifier: Notifier, publisher=None) -> Pipeline:
    settings = load_settings({"EDGED_MODEL__PATH": str(require_model())})
    return Pipeline(source, HaarDetector(settings.detector), EmotionClassifier.from_settings(settings.model),
                    Tracker(settings.tracker), publisher or SilentPublisher(), threading.Event(), notifier=notifier,
                    status_interval_s=0.2, backoff_max_s=0.2)


def test_a_stream_that_stalls_and_whose_reopen_stalls_too_keeps_the_watchdog_fed(tmp_path):
    """Fault 3: reads and reopens that time out are the capture thread working, not a hang."""
    camera = MjpegServer().start()
    manager = Manager(tmp_path / "notify")
    notifier = Notifier(manager.address, watchdog_usec=400_000)  # a ping due every 0.2 s
    pipeline = _pipeline(OpenCVSource("url", camera.url, timeout_s=0.5), notifier)
    runner = threading.Thread(target=pipeline.run)
    try:
        runner.start()
        wait_until(lambda: pipeline.frames >= 5, timeout=30, what="frames from the camera")
        camera.stall()
        wait_until(lambda: pipeline.capture.failed_reopens >= 2, timeout=30, what="two reopens that time out")
        pings = manager.kinds().count("WATCHDOG")
        wait_until(lambda: manager.kinds().count("WATCHDOG") >= pings + 3, timeout=10,
                   what="watchdog pings while the stream stays stalled")
        assert not pipeline.capture.camera_ok and not pipeline.capture.hung
    finally:
        pipeline.stop.set()
        runner.join(30)
        manager.close()
        notifier.close()
        camera.stop()
    assert "camera lost, reopening" in manager.statuses()[-2]


class WedgedCamera:
    """Opens fine, then every read times out, as a wedged V4L2 driver's select() does."""

    source = "wedged"

    def open(self) -> None:
        pass

    def read(self):
        threading.Event().wait(0.05)
        raise CameraError("select() timeout")

    def close(self) -> None:
        pass


class FrozenCamera:
    """A driver call that never returns: read blocks until the test lets it go."""

    source = "frozen"

    def __init__(self) -> None:
        self.release = threading.Event()

    def open(self) -> None:
        pass

    def read(self):
        self.release.wait()
        raise CameraError("released")

    def close(self) -> None:
        pass


def test_absent_and_wedged_cameras_are_one_case_reopened_with_the_watchdog_fed(tmp_path):
    """Fault 4, one way: a camera that opens and delivers nothing is reopened with backoff, like an absent one."""
    manager = Manager(tmp_path / "notify")
    notifier = Notifier(manager.address, watchdog_usec=200_000)
    pipeline = _pipeline(WedgedCamera(), notifier)
    runner = threading.Thread(target=pipeline.run)
    try:
        runner.start()
        wait_until(lambda: pipeline.capture.failed_reopens >= 2, what="two failed reopens")
        pings = manager.kinds().count("WATCHDOG")
        wait_until(lambda: manager.kinds().count("WATCHDOG") >= pings + 3, what="pings while it is reopened")
    finally:
        pipeline.stop.set()
        runner.join(10)
        manager.close()
        notifier.close()
    assert pipeline.frames == 0 and not pipeline.capture.hung


def test_only_a_call_that_never_returns_starves_the_watchdog(tmp_path):
    """Fault 4, the other way: a read hung past hung_after_s stops the pings, so systemd restarts the daemon."""
    manager = Manager(tmp_path / "notify")
    notifier = Notifier(manager.address, watchdog_usec=200_000)
    camera = FrozenCamera()
    pipeline = _pipeline(camera, notifier)
    pipeline.capture.hung_after_s = 0.5
    runner = threading.Thread(target=pipeline.run)
    try:
        runner.start()
        wait_until(lambda: manager.kinds().count("WATCHDOG") >= 1, what="a ping before the read hangs for long")
        wait_until(lambda: pipeline.capture.hung, what="the read to count as hung")
        statuses = manager.kinds().count("STATUS")
        wait_until(lambda: manager.kinds().count("STATUS") >= statuses + 1, what="one more STATUS")
        mark = len(manager.kinds())  # any ping decided before `hung` turned true has arrived by now
        wait_until(lambda: manager.kinds().count("STATUS") >= statuses + 4, what="three more STATUS")
        assert "WATCHDOG" not in manager.kinds()[mark:]
    finally:
        camera.release.set()
        pipeline.stop.set()
        runner.join(10)
        manager.close()
        notifier.close()


def test_the_watchdog_budget_is_below_watchdogsec():
    """Every call into a camera is bounded by CALL_TIMEOUT_S, a call is hung only well after that, and a healthy
    daemon pings every WatchdogSec/2 plus one turn of its loop (0.2 s of waiting for a frame, then that frame)."""
    unit = (ROOT / "systemd" / "edged.service").read_text()
    watchdog_s = float(re.search(r"^WatchdogSec=(\d+)s?$", unit, re.MULTILINE).group(1))
    assert STREAM_TIMEOUT_MS == CALL_TIMEOUT_S * 1000
    from edged.camera.picamera2 import CAPTURE_TIMEOUT_S
    assert CAPTURE_TIMEOUT_S <= CALL_TIMEOUT_S
    assert CALL_TIMEOUT_S * 1.2 <= HUNG_AFTER_S, "a slow but bounded call must not count as hung"
    assert watchdog_s / 2 + 0.2 + 1.0 < watchdog_s * 0.6, "the longest silence of a healthy daemon"
    notifier = Notifier("@x", watchdog_usec=round(watchdog_s * 1e6))
    assert notifier.watchdog_interval_s == watchdog_s / 2


def test_a_daemon_killed_with_a_face_in_view_sends_its_face_left_at_the_next_start(broker, tmp_path):
    """Fault 7: SIGKILL (or a crash, a power cut) never says goodbye; the next start does, from the state dir."""
    camera = MjpegServer().start()
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": camera.url,
           "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(broker.port), "EDGED_DEVICE_ID": DEVICE,
           "EDGED_STATE_DIR": str(tmp_path / "state")}
    sub = Subscriber(broker.port, f"edged/{DEVICE}/events")

    def events() -> list[dict]:
        return [json.loads(m.payload) for m in sub.on(f"edged/{DEVICE}/events")]

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    record = tmp_path / "state" / "in_view.json"
    daemon = start()
    try:
        sub.wait_for(lambda _: any(e["type"] == "face_appeared" for e in events()), timeout=60, what="face_appeared")


        def seen_for() -> float:
            tracks = json.loads(record.read_text())["tracks"] if record.is_file() else []
            return tracks[0]["last_seen_utc"] - tracks[0]["first_seen_utc"] if tracks else -1.0

        wait_until(lambda: seen_for() >= 1.5, timeout=20, what="the face recorded, and refreshed while it stays")
        daemon.kill()
        daemon.communicate(timeout=30)
        killed_at = time.time()
        recorded = json.loads(record.read_text())["tracks"][0]
        before = events()
        assert not any(e["type"] == "face_left" for e in before), "a killed daemon says no goodbye"
        camera.stop()  # nobody in view at the next start: only the recovered goodbye is new
        daemon = start()
        sub.wait_for(lambda _: any(e["type"] == "face_left" for e in events()), timeout=60, what="the face_left owed")
    finally:
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=30)
        sub.close()
        camera.stop()
    appeared = next(e for e in before if e["type"] == "face_appeared")
    left = [e for e in events() if e["type"] == "face_left"]
    assert len(left) == 1 and left[0]["track"] == appeared["track"] and left[0]["recovered"] is True
    assert _epoch(appeared["ts"]) <= _epoch(left[0]["ts"]) <= killed_at, "stamped when the face was last seen"
    assert _epoch(left[0]["ts"]) == pytest.approx(recorded["last_seen_utc"], abs=0.001)
    assert left[0]["dwell_s"] == pytest.approx(recorded["last_seen_utc"] - recorded["first_seen_utc"], abs=0.001)
    assert left[0]["seq"] > max(e["seq"] for e in before)
    assert json.loads(record.read_text())["tracks"] == [], "said once: a third start owes nothing"
    assert "without saying goodbye" in stderr


def _rtsp_server_available() -> bool:
    if not Path("/usr/bin/python3").is_file():
        return False
    probe = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer; gi.require_version('Gst', '1.0'); "
                            "from gi.repository import Gst; Gst.init(None); "
                            "assert Gst.ElementFactory.find('avdec_mpeg4') and Gst.ElementFactory.find('jpegenc')"],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


class RtspCamera:
    """tests/rtsp_server.py in a subprocess: kill() is the camera losing power, start() brings it back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> RtspCamera:
        self.process = subprocess.Popen(["/usr/bin/python3", str(ROOT / "tests" / "rtsp_server.py"), str(self.port),
                                         str(SAMPLE_CLIP)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.mark.skipif(not _rtsp_server_available(),
                    reason="needs Debian's GStreamer RTSP server: apt-get install gir1.2-gst-rtsp-server-1.0 "
                           "python3-gi gstreamer1.0-libav gstreamer1.0-plugins-good")
def test_an_rtsp_camera_killed_with_a_face_in_view_and_restarted(tmp_path):
    from test_pipeline import RecordingPublisher

    camera = RtspCamera().start()
    settings = load_settings({"EDGED_CAMERA__SOURCE": camera.url, "EDGED_CAMERA__REOPEN_BACKOFF_MAX_S": "0.5",
                              "EDGED_MODEL__PATH": str(require_model())})
    publisher = RecordingPublisher()
    pipeline = build(settings, lambda model_id: publisher, threading.Event(), keep_faces=False)
    runner = threading.Thread(target=pipeline.run)
    try:
        runner.start()
        wait_until(lambda: any(e.type == "face_appeared" for e in publisher.events), timeout=60, what="face_appeared")
        camera.kill()
        killed_at = time.time()
        wait_until(lambda: any(e.type == "face_left" for e in publisher.events), timeout=30,
                   what="face_left while the RTSP camera is down")
        assert publisher.states[-1] == [] and not pipeline.capture.camera_ok
        camera.start()
        wait_until(lambda: pipeline.capture.reconnects >= 1, timeout=60, what="the camera back")
        frames = pipeline.frames
        wait_until(lambda: pipeline.frames > frames + 5, timeout=30, what="frames after the restart")
    finally:
        pipeline.stop.set()
        runner.join(30)
        camera.kill()
    left = next(e for e in publisher.events if e.type == "face_left")
    # ts is when the last frame was received: one already in flight may be read a few ms after the kill.
    assert left.ts_utc <= killed_at + 0.5


def test_an_unreadable_faces_record_is_logged_and_skipped_never_raised(tmp_path, caplog):
    from edged.inview import FILE_NAME, InView

    (tmp_path / FILE_NAME).write_text('{"tracks": [{"id": 3, "box": [1, 2')  # cut short by a power cut
    record = InView(tmp_path)
    assert record.recovered() == [] and record.max_id == 0
    assert "unreadable" in caplog.text
    record.record([])
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {"tracks": []}

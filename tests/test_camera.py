"""Frame sources, the drop-oldest queue and the capture thread, on the real sample clip."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types

import numpy as np
import pytest
from fake_picamera2 import FakePicamera2
from media import SAMPLE_CLIP

from edged.camera import open_source, source_kind
from edged.camera.capture import Capture
from edged.camera.opencv import OpenCVSource, has_gstreamer
from edged.camera.picamera2 import CAPTURE_TIMEOUT_S
from edged.camera.queue import FrameQueue
from edged.errors import CameraError, ConfigError
from edged.faces import Frame
from edged.settings import CameraSettings

CLIP_FRAMES, CLIP_FPS = 180, 15


@pytest.mark.parametrize(("source", "kind"), [
    ("0", "v4l2"), ("/dev/video2", "v4l2"), ("picamera2", "picamera2"), ("gst:videotestsrc ! appsink", "gstreamer"),
    ("rtsp://cam.local/stream", "url"), ("http://cam.local/mjpg", "url"), ("samples/faces.mp4", "file"),
])
def test_source_kind(source, kind):
    assert source_kind(source) == kind


def test_file_plays_every_frame_in_grayscale_with_media_time():
    source = open_source(CameraSettings(source=str(SAMPLE_CLIP), realtime=False))
    frames = []
    try:
        while (frame := source.read()) is not None:
            frames.append(frame)
    finally:
        source.close()
    assert len(frames) == CLIP_FRAMES
    assert frames[0].gray.shape == (480, 640) and frames[0].gray.dtype == np.uint8
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    steps = np.diff([f.captured_utc for f in frames])
    assert np.allclose(steps, 1 / CLIP_FPS)


def test_paced_capture_plays_a_file_at_its_frame_rate():
    source = OpenCVSource("file", str(SAMPLE_CLIP))
    source.open()
    queue, stop = FrameQueue(2), threading.Event()
    capture = Capture(source, queue, stop, lossless=True, paced=True)
    capture.start()
    seen = []
    while len(seen) < 9:
        if queue.get(1.0) is not None:
            seen.append(time.monotonic())
    stop.set()
    capture.join(5)
    source.close()
    assert seen[-1] - seen[0] >= 8 / CLIP_FPS * 0.9  # a lower bound only: the ninth frame is due 8/15 s after the first


def test_missing_file_names_the_source():
    with pytest.raises(ConfigError, match=r"nowhere\.mp4"):
        open_source(CameraSettings(source="/nowhere.mp4"))


@pytest.mark.skipif(has_gstreamer(), reason="this OpenCV has GStreamer")
def test_gstreamer_without_support_points_to_system_opencv():
    with pytest.raises(ConfigError, match="JetPack"):
        open_source(CameraSettings(source="gst:videotestsrc ! appsink"))


def _clip_frames(count: int) -> list[Frame]:
    source = OpenCVSource("file", str(SAMPLE_CLIP))
    source.open()
    try:
        return [source.read() for _ in range(count)]
    finally:
        source.close()


def test_queue_drops_the_oldest_and_counts():
    frames = _clip_frames(5)
    queue = FrameQueue(2)
    for frame in frames:
        queue.put(frame)
    assert queue.dropped == 3 and len(queue) == 2
    assert [queue.get(0.1).index, queue.get(0.1).index] == [3, 4]
    assert queue.get(0.01) is None and not queue.finished
    queue.close()
    assert queue.finished


def test_capture_lossless_delivers_every_frame_in_order():
    source = OpenCVSource("file", str(SAMPLE_CLIP))
    source.open()
    queue, stop = FrameQueue(2), threading.Event()
    capture = Capture(source, queue, stop, lossless=True)
    capture.start()
    seen = []
    while not queue.finished:
        if (frame := queue.get(1.0)) is not None:
            seen.append(frame.index)
    capture.join(5)
    source.close()
    assert seen == list(range(CLIP_FRAMES)) and queue.dropped == 0


def test_capture_with_a_slow_consumer_drops_and_stays_fresh():
    source = OpenCVSource("file", str(SAMPLE_CLIP))
    source.open()
    queue, stop = FrameQueue(1), threading.Event()
    capture = Capture(source, queue, stop)
    capture.start()
    seen = []
    while not queue.finished:
        if (frame := queue.get(1.0)) is not None:
            seen.append(frame.index)
            time.sleep(0.02)  # processing slower than decoding
    capture.join(5)
    source.close()
    assert queue.dropped > 0 and len(seen) + queue.dropped == CLIP_FRAMES
    assert seen == sorted(seen) and seen[-1] == CLIP_FRAMES - 1


class FlakyCamera:
    """A live camera that fails after `fail_after` frames and delivers again once reopened."""

    def __init__(self, fail_after: int) -> None:
        self.fail_after, self.opens, self.index = fail_after, 0, 0
        self.frame = np.zeros((4, 4), np.uint8)

    def open(self) -> None:
        self.opens += 1

    def read(self) -> Frame:
        self.index += 1
        if self.index == self.fail_after:
            raise CameraError("camera 'flaky' stopped delivering frames")
        return Frame(self.index, self.frame, time.monotonic(), time.time())

    def close(self) -> None:
        pass


def test_capture_reopens_a_lost_camera():
    camera, queue, stop = FlakyCamera(fail_after=3), FrameQueue(2), threading.Event()
    capture = Capture(camera, queue, stop, backoff_min_s=0.01)
    capture.start()
    seen = []
    while len(seen) < 5:
        if (frame := queue.get(1.0)) is not None:
            seen.append(frame.index)
    stop.set()
    capture.join(5)
    assert camera.opens == 1 and 3 not in seen and max(seen) > 3
    assert not capture.alive


class OpensButCannotRead(FlakyCamera):
    """A stream that accepts every connection, then fails its first `bad_reads` reads (e.g. a server that is up
    before its encoder is)."""

    def __init__(self, bad_reads: int) -> None:
        super().__init__(fail_after=0)
        self.bad_reads = bad_reads

    def read(self) -> Frame:
        if self.bad_reads > 0:
            self.bad_reads -= 1
            raise CameraError("camera 'stubborn' delivered no frame")
        return super().read()


def test_a_camera_that_opens_but_cannot_read_is_back_only_once_it_delivers(caplog):
    caplog.set_level(logging.INFO, logger="edged.camera.capture")
    camera, queue, stop = OpensButCannotRead(bad_reads=6), FrameQueue(2), threading.Event()
    capture = Capture(camera, queue, stop, lossless=True, backoff_min_s=0.01, backoff_max_s=0.02)
    capture.start()
    try:
        first = queue.get(5.0)
    finally:
        stop.set()
        capture.join(5)
    assert first is not None and first.index == 1  # the frame that proved it back is delivered, not dropped
    assert camera.opens == 6 and capture.reconnects == 1  # five failed reopens, then one that read a frame
    messages = [r.getMessage() for r in caplog.records]
    assert sum("camera lost" in m for m in messages) == 1 and sum("camera back" in m for m in messages) == 1


def _fake_picamera2(monkeypatch, **flags) -> type[FakePicamera2]:
    fake = type("FakePicamera2", (FakePicamera2,), flags)
    module = types.ModuleType("picamera2")
    module.Picamera2 = fake
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return fake


def test_picamera2_reads_the_y_plane_of_lores_in_a_full_field_sensor_mode(monkeypatch):
    _fake_picamera2(monkeypatch)
    source = open_source(CameraSettings(source="picamera2", width=640, height=480, fps=30))
    frame = source.read()
    camera = FakePicamera2.instances[-1]
    source.close()
    assert camera.config["lores"] == {"size": (640, 480), "format": "YUV420"}
    assert camera.mode["crop_limits"] == (0, 0, 3280, 2464), "the whole field of view, not the centre crop"
    assert camera.mode["size"] == (1640, 1232) and camera.config["sensor"] == {"output_size": (1640, 1232),
                                                                                "bit_depth": 10}
    # up to 30 fps, but exposure may grow to 100 ms (10 fps) in a dim room instead of being capped at 33 ms
    assert camera.config["controls"] == {"FrameDurationLimits": (33333, 100000)}
    assert frame.gray.shape == (480, 640) and frame.gray.flags.c_contiguous
    assert np.array_equal(frame.gray[7], np.arange(640) % 200)  # the stride's padding and U, V left out
    assert camera.waits == [CAPTURE_TIMEOUT_S]
    assert camera.closed and not camera.started


def test_picamera2_without_the_sensor_argument_asks_for_the_mode_through_the_raw_stream(monkeypatch):
    _fake_picamera2(monkeypatch, old=True)
    source = open_source(CameraSettings(source="picamera2", width=320, height=240, fps=20))
    camera = FakePicamera2.instances[-1]
    source.close()
    assert camera.config["raw"] == {"size": (1640, 1232)} and camera.mode["crop_limits"] == (0, 0, 3280, 2464)


def test_picamera2_without_a_mode_request_would_crop_the_field_of_view(monkeypatch):
    camera = _fake_picamera2(monkeypatch)()  # the fake itself: what libcamera picks when not told
    camera.configure(camera.create_video_configuration(main={"size": (640, 480), "format": "YUV420"}))
    assert camera.mode["crop_limits"] == (1000, 752, 1280, 960)


def test_a_hung_picamera2_capture_times_out_as_a_camera_error(monkeypatch):
    _fake_picamera2(monkeypatch, hang=True)
    source = open_source(CameraSettings(source="picamera2"))
    with pytest.raises(CameraError, match="stopped delivering frames: TimeoutError"):
        source.read()
    source.close()


def test_a_usb_camera_through_picamera2_uses_its_main_stream(monkeypatch):
    _fake_picamera2(monkeypatch, usb=True)
    source = open_source(CameraSettings(source="picamera2", width=320, height=240))
    frame = source.read()
    camera = FakePicamera2.instances[-1]
    source.close()
    assert camera.config["lores"] is None and camera.config["main"]["format"] == "YUYV"
    assert frame.gray.shape == (240, 320) and np.array_equal(frame.gray[3], np.arange(320) % 200)


def test_picamera2_that_cannot_be_imported_is_a_configuration_error_with_its_cause(monkeypatch):
    broken = types.ModuleType("picamera2")

    def __getattr__(name: str):
        raise ValueError("numpy.dtype size changed, may indicate binary incompatibility")

    broken.__getattr__ = __getattr__
    monkeypatch.setitem(sys.modules, "picamera2", broken)
    with pytest.raises(ConfigError, match=r"cannot be imported: ValueError: numpy\.dtype size changed"):
        open_source(CameraSettings(source="picamera2"))


def test_picamera2_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(ConfigError, match="python3-picamera2"):
        open_source(CameraSettings(source="picamera2"))

r"""OpenCV `VideoCapture` backend: V4L2 devices, GStreamer pipelines, network streams and video files.

GStreamer (``gst:`` sources) needs an OpenCV built with it; pip's `opencv-python-headless` is not. On a
Jetson, use JetPack's system OpenCV (`python3-opencv`) from a venv made with ``--system-site-packages``
and install edged without its `opencv` extra. A CSI camera on a Jetson, converted on the VIC::

    export EDGED_CAMERA__SOURCE="gst:nvarguscamerasrc sensor-id=0 ! \
    video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! nvvidconv ! \
    video/x-raw,width=640,height=480,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"

Where nvvidconv offers ``format=GRAY8``, ending with ``nvvidconv ! video/x-raw,width=640,height=480,format=GRAY8 !
appsink drop=true max-buffers=1`` skips the colour conversion entirely; this backend takes 1-channel frames as they are.
"""

from __future__ import annotations

import logging
import re
import time

import cv2
import numpy as np

from edged.camera import CALL_TIMEOUT_S
from edged.errors import CameraError, ConfigError
from edged.faces import Frame
from edged.paths import readable_file

logger = logging.getLogger(__name__)

_TO_GRAY = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}
MIN_SIDE = 32  # smaller frames cannot hold a detectable face, and the detector's downscale would make them empty


def has_gstreamer() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines."""
    return re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()) is not None


# Longest wait (ms) to open or read a network stream: the watchdog budget's CALL_TIMEOUT_S (see edged.camera).
STREAM_TIMEOUT_MS = round(CALL_TIMEOUT_S * 1000)
# Rotation metadata (degrees clockwise to display upright, FFmpeg's convention) -> the cv2.rotate code doing it.
_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}

class OpenCVSource:
    """Frames from `cv2.VideoCapture`, converted to grayscale once, here.

    kind: "v4l2" (an index or /dev/videoN), "gstreamer" ("gst:" + pipeline), "url" or "file".
    width, height (pixels) and fps are requested from V4L2 devices; files and streams keep their own.
    A file is read as fast as it decodes; its frames are stamped with media time (start + index / fps),
    which the capture thread paces by when the file should play in real time, and which keeps tracking
    independent of processing speed. realtime=True starts the media clock when the file is opened (it plays
    like a camera); realtime=False places the clip so that it ends when it was opened, so no frame is stamped in
    the future however fast it is processed, and intervals (dwell times) stay the clip's own.
    Rotation metadata (phone video) is honoured for files and streams: frames are turned upright here.
    timeout_s bounds each open and read of a network stream (the watchdog budget).
    """

    def __init__(self, kind: str, source: str, width: int = 640, height: int = 480, fps: float = 30.0,
                 realtime: bool = True, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.kind = kind
        self.source = source
        self.width, self.height, self.fps = width, height, fps
        self.realtime = realtime
        self.timeout_ms = round(timeout_s * 1000)
        self.rotation = 0  # degrees clockwise applied to every frame, from the source's metadata
        self._yuv_rows = 0  # a GStreamer appsink's image height: a 1-channel frame 1.5 times as tall is YUV 4:2:0
        self._eos_logged = False
        self._open_error_logged = False
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._file_fps = fps
        self._start_utc = 0.0
        self._file_frame = 0

    def open(self) -> None:
        try:
            self._cap = self._open_capture()
        except cv2.error as exc:
            raise CameraError(f"camera source {self.source!r}: {exc}") from None
        if not self._cap.isOpened():
            self._cap.release()
            self._cap = None
            if self.kind == "file":  # it exists (checked above) but no decoder takes it: retrying cannot help
                raise ConfigError(f"video file {self.source!r} cannot be read: not a video OpenCV can decode "
                                  "(EDGED_CAMERA__SOURCE)")
            if self.kind == "gstreamer" and not self._open_error_logged:
                # A typo, a missing element and an absent camera look the same from here: all are retried with
                # backoff, so say once, loudly, how to find out which.
                self._open_error_logged = True
                logger.error("GStreamer pipeline %r cannot be started; it is retried with backoff. A typo, a missing "
                             "element or plugin, or an absent camera? Run it with: gst-launch-1.0 -v %s",
                             self.source, _fakesink_pipeline(self.source))
            raise CameraError(f"camera source {self.source!r} cannot be opened ({self.kind}); "
                              "check EDGED_CAMERA__SOURCE" + _HINTS.get(self.kind, ""))
        width, height = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.kind in ("file", "url"):
            self.rotation = self._rotation()
        self._yuv_rows = height if self.kind == "gstreamer" else 0
        if self.kind == "file":
            reported = self._cap.get(cv2.CAP_PROP_FPS)
            # Some containers report 0 or absurd rates; fall back to the configured one.
            self._file_fps = reported if 1.0 <= reported <= 240.0 else self.fps
            self._file_frame = 0
            self._start_utc = time.time()
            if not self.realtime:  # the clip ends now: every stamp is in the past
                count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
                self._start_utc -= max(0.0, count) / self._file_fps
        logger.info("camera %s opened (%s, %dx%d%s)", self.source, self.kind, width, height,
                    f", rotated {self.rotation} degrees by its metadata" if self.rotation else "")

    def _rotation(self) -> int:
        """Degrees (0, 90, 180, 270) to turn frames clockwise, from the container's metadata. OpenCV's own automatic
        orientation is turned off, so frames are turned exactly once, here, whatever OpenCV's default is."""
        assert self._cap is not None
        meta = round(self._cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 360
        if not self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0) and self._cap.get(cv2.CAP_PROP_ORIENTATION_AUTO):
            return 0  # this backend insists on turning frames itself
        if meta not in _ROTATE:
            if meta:
                logger.warning("camera source %r: rotation metadata of %d degrees ignored (not a quarter turn)",
                               self.source, meta)
            return 0
        return meta

    def _open_capture(self) -> cv2.VideoCapture:
        match self.kind:
            case "v4l2":
                device: int | str = int(self.source) if self.source.isdigit() else self.source
                cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                cap.set(cv2.CAP_PROP_FPS, self.fps)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's backlog only adds latency
                return cap
            case "gstreamer":
                if not has_gstreamer():
                    raise ConfigError(
                        f"camera source {self.source!r} is a GStreamer pipeline, but this OpenCV ({cv2.__version__}) "
                        "has no GStreamer (pip wheels never do); on a Jetson use JetPack's system OpenCV: "
                        "python3 -m venv --system-site-packages, and install edged without the [opencv] extra")
                return cv2.VideoCapture(self.source.removeprefix("gst:"), cv2.CAP_GSTREAMER)
            case "file":
                readable_file(self.source, "EDGED_CAMERA__SOURCE")  # the video file
                return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG)
            case _:
                # FFmpeg waits 30 s by default for a host that does not answer: as long as systemd's WatchdogSec,
                # which would then restart a daemon that is only waiting for its stream to come back.
                timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                            self.timeout_ms]
                return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, timeouts)

    def read(self) -> Frame | None:
        """The next grayscale frame; None at the end of a file; `CameraError` when a live source fails."""
        if self._cap is None:
            raise CameraError(f"camera source {self.source!r} is not open")
        try:
            ok, image = self._cap.read()
            gray = self._gray(image) if ok and image is not None else None
        except cv2.error as exc:
            if self.kind == "file":
                logger.warning("video file %s: decoding failed, treating as its end: %s", self.source, exc)
                return None
            raise CameraError(f"camera source {self.source!r}: {exc}") from None
        if gray is None:
            if self.kind == "gstreamer" and not self._eos_logged:
                self._eos_logged = True
                logger.error("GStreamer pipeline %r stopped delivering (end of stream or an error): it is reopened "
                             "with backoff like a lost camera. A pipeline that plays a file ends for good: give the "
                             "file itself as EDGED_CAMERA__SOURCE", self.source)
            if self.kind == "file" and self._file_frame == 0:
                raise ConfigError(f"video file {self.source!r} has no frame OpenCV can decode (EDGED_CAMERA__SOURCE)")
            if self.kind == "file":
                return None
            raise CameraError(f"camera source {self.source!r} stopped delivering frames")
        if self.kind == "file":
            captured_utc = self._start_utc + self._file_frame / self._file_fps
            if not self.realtime:
                captured_utc = min(captured_utc, time.time())  # a frame count that undercounts must not reach ahead
            self._file_frame += 1
        else:
            captured_utc = time.time()
        frame = Frame(self._index, gray, time.monotonic(), captured_utc)
        self._index += 1
        return frame

    def _gray(self, image: np.ndarray) -> np.ndarray:
        """8-bit grayscale from 8-bit gray, BGR or BGRA; anything else names the source and what it sent."""
        channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
        if image.dtype != np.uint8 or channels not in (1, 3, 4) or min(image.shape[:2]) < MIN_SIDE:
            shape = "x".join(str(n) for n in image.shape)
            what = (f"camera source {self.source!r} delivered a {shape} {image.dtype} frame; edged needs 8-bit "
                    f"gray, BGR or BGRA frames of at least {MIN_SIDE}x{MIN_SIDE} pixels")
            if self.kind == "gstreamer":  # the pipeline text fixes the format: no reopen will change it
                raise ConfigError(what + "; end the pipeline with '! videoconvert ! video/x-raw,format=GRAY8 ! appsink "
                                  "drop=true max-buffers=1' (EDGED_CAMERA__SOURCE)")
            # A file will not change its mind; a live camera may after a reopen (a format renegotiated).
            raise ConfigError(what + " (EDGED_CAMERA__SOURCE)") if self.kind == "file" else CameraError(what)
        if channels == 1:
            gray = image if image.ndim == 2 else image[:, :, 0]
            if self._yuv_rows and gray.shape[0] == self._yuv_rows * 3 // 2:
                gray = gray[:self._yuv_rows]  # I420/YV12/NV12/NV21 come as one array: Y rows, then chroma rows
        else:
            gray = cv2.cvtColor(image, _TO_GRAY[channels])
        return cv2.rotate(gray, _ROTATE[self.rotation]) if self.rotation else gray

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _fakesink_pipeline(source: str) -> str:
    """The pipeline with its appsink swapped for fakesink, for gst-launch-1.0."""
    pipeline = source.removeprefix("gst:")
    return re.sub(r"appsink[^!]*$", "fakesink", pipeline.strip()) if "appsink" in pipeline else pipeline


_HINTS = {
    "v4l2": " (is the device present, and is the user in the 'video' group? try: v4l2-ctl --list-devices)",
    "gstreamer": " (test the pipeline with gst-launch-1.0, ending in fakesink instead of appsink)",
    "url": " (is the stream reachable? try: ffprobe URL)",
}

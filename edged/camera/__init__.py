"""Where frames come from: one `FrameSource` protocol, its backends beside it, and the capture thread.

`EDGED_CAMERA__SOURCE` picks the backend (see `source_kind`):

- ``picamera2``                     Raspberry Pi camera via libcamera (`edged.camera.picamera2`)
- ``0`` or ``/dev/video0``          a V4L2 device: USB webcam, CSI camera exposed through V4L2
- ``gst:<pipeline ending in appsink>`` a GStreamer pipeline, e.g. `nvarguscamerasrc` on a Jetson
- ``rtsp://...``, ``http://...``    a network stream (FFmpeg)
- anything else                     a video file (FFmpeg); it ends, and the daemon with it
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, Protocol

from edged.faces import Frame

if TYPE_CHECKING:
    from edged.settings import CameraSettings

# The watchdog budget, written down once (systemd/edged.service: WatchdogSec=30; edged pings every half of it).
# Every call into a live source returns within CALL_TIMEOUT_S, with frames or with a CameraError: FFmpeg's open and
# read timeouts for streams, OpenCV's 10 s select() for V4L2, picamera2's capture timeout. A source that is absent
# (cannot be opened) and one that is wedged (opens, then delivers nothing, or stalls) get the same treatment: the
# capture thread reopens it with backoff while the watchdog stays fed, since a restart would do no more than a
# reopen and would crash-loop into a failed unit. The watchdog starves only when one call has not returned after
# HUNG_AFTER_S: a hung driver, which only a new process can cure. So a healthy daemon is never silent for longer than
# WatchdogSec/2 plus one turn of the frame loop, whatever the camera does (tests/test_outage.py checks the numbers).
CALL_TIMEOUT_S = 10.0
HUNG_AFTER_S = 15.0

SourceKind = Literal["picamera2", "v4l2", "gstreamer", "url", "file"]

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class FrameSource(Protocol):
    """A camera, stream or file delivering grayscale frames.

    `read()` returns None only at the end of a file; a live source that stops delivering raises
    `CameraError`, and the capture thread then closes it and calls `open()` again. `open()` and `read()` of a live
    source return or raise within CALL_TIMEOUT_S.
    """

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


def source_kind(source: str) -> SourceKind:
    """Classify an `EDGED_CAMERA__SOURCE` value."""
    text = source.strip()
    if text.lower() == "picamera2":
        return "picamera2"
    if text.isdigit() or text.startswith("/dev/video"):
        return "v4l2"
    if text.startswith("gst:"):
        return "gstreamer"
    if _URL.match(text):
        return "url"
    return "file"


def make_source(camera: CameraSettings) -> FrameSource:
    """Build the configured source without opening it (the capture thread may open it later, with backoff)."""
    kind = source_kind(camera.source)
    match kind:
        case "picamera2":
            from edged.camera.picamera2 import Picamera2Source

            return Picamera2Source(camera.width, camera.height, camera.fps)
        case "v4l2" | "gstreamer" | "url" | "file":
            from edged.camera.opencv import OpenCVSource

            return OpenCVSource(kind, camera.source.strip(), camera.width, camera.height, camera.fps,
                                realtime=camera.realtime)


def open_source(camera: CameraSettings) -> FrameSource:
    """Build the configured source and open it.

    Raises ConfigError when no retry can help (a video file that is missing or unreadable, GStreamer without
    support), CameraError naming the source when it cannot be opened now (a camera unplugged, a stream down).
    """
    source = make_source(camera)
    source.open()
    return source

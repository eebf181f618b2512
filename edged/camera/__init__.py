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

SourceKind = Literal["picamera2", "v4l2", "gstreamer", "url", "file"]

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class FrameSource(Protocol):
    """A camera, stream or file delivering grayscale frames.

    `read()` returns None only at the end of a file; a live source that stops delivering raises
    `CameraError`, and the capture thread then closes it and calls `open()` again.
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

            return OpenCVSource(kind, camera.source.strip(), camera.width, camera.height, camera.fps)


def open_source(camera: CameraSettings) -> FrameSource:
    """Build the configured source and open it.

    Raises ConfigError when no retry can help (a video file that is missing or unreadable, GStreamer without
    support), CameraError naming the source when it cannot be opened now (a camera unplugged, a stream down).
    """
    source = make_source(camera)
    source.open()
    return source

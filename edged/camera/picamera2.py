"""Raspberry Pi camera via picamera2 (libcamera): the lores YUV420 stream, whose Y plane is the grayscale frame.

picamera2 comes from Raspberry Pi OS (``sudo apt install python3-picamera2``), not pip: make the venv with
``--system-site-packages``. No colour conversion happens: the ISP writes Y, we read Y.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import numpy as np

from edged.camera import CALL_TIMEOUT_S
from edged.errors import CameraError, ConfigError
from edged.faces import Frame

logger = logging.getLogger(__name__)

# Longest wait for one frame (seconds), the watchdog budget's CALL_TIMEOUT_S: picamera2 raises TimeoutError after it.
CAPTURE_TIMEOUT_S = CALL_TIMEOUT_S


class Picamera2Source:
    """The lores stream at width x height pixels and `fps` frames per second."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._cam: Any = None
        self._size = (width, height)
        self._stride = width
        self._index = 0

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            # No retry can install a package: a configuration error (exit 78), not a camera to wait for.
            raise ConfigError("camera source 'picamera2': picamera2 is not installed; on Raspberry Pi OS run "
                              "'sudo apt install python3-picamera2' and use a venv made with --system-site-packages") from None
        cam = None
        try:
            cam = Picamera2()
            frame_us = round(1_000_000 / self.fps)  # FrameDurationLimits: every picamera2 version has it
            # lores may not exceed main; main at the same size keeps the ISP's work and memory small.
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                lores={"size": (self.width, self.height), "format": "YUV420"},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
            )
            cam.configure(config)
            lores = cam.stream_configuration("lores")
            self._size, self._stride = tuple(lores["size"]), int(lores["stride"])
            cam.start()
        except Exception as exc:  # libcamera reports a missing or busy camera as RuntimeError/IndexError
            if cam is not None:
                with contextlib.suppress(Exception):
                    cam.close()  # release the camera, or the next open finds it busy
            raise CameraError(f"camera source 'picamera2' cannot be opened: {exc}") from None
        self._cam = cam
        logger.info("camera picamera2 opened (lores %dx%d, stride %d)", *self._size, self._stride)

    def read(self) -> Frame:
        if self._cam is None:
            raise CameraError("camera source 'picamera2' is not open")
        width, height = self._size
        try:
            buffer = self._cam.capture_buffer("lores")
        except Exception as exc:
            raise CameraError(f"camera source 'picamera2' stopped delivering frames: {exc}") from None
        # YUV420: `height` rows of Y, each `stride` bytes wide, come first; U and V follow and are ignored.
        gray = np.ascontiguousarray(buffer[: self._stride * height].reshape(height, self._stride)[:, :width])
        frame = Frame(self._index, gray, time.monotonic(), time.time())
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cam is not None:
            cam, self._cam = self._cam, None
            try:
                cam.stop()
            finally:
                cam.close()

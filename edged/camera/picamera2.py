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


# The slowest frame rate auto-exposure may fall to in a dim room (frames per second): a fixed frame duration at 30 fps
# would cap exposure at 33 ms and leave faces too dark to find.
MIN_FPS = 10.0


class Picamera2Source:
    """The lores stream at width x height pixels and up to `fps` frames per second (down to MIN_FPS in dim light).

    The sensor runs in a full-field mode (the whole field of view, binned), not the centre crop a small output size
    would pick by itself. A USB camera opened through picamera2 has no lores stream: its main stream is used.
    Each capture waits at most CAPTURE_TIMEOUT_S, then raises `CameraError`, so a hung camera is reopened.
    """

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._cam: Any = None
        self._size = (width, height)
        self._stride = width
        self._stream = "lores"
        self._format = "YUV420"
        self._index = 0

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            # No retry can install a package: a configuration error (exit 78), not a camera to wait for.
            raise ConfigError("camera source 'picamera2': picamera2 is not installed; on Raspberry Pi OS run "
                              "'sudo apt install python3-picamera2' and use a venv made with --system-site-packages"
                              f" ({exc})") from None
        except Exception as exc:  # e.g. a numpy built for another ABI than libcamera's bindings: no retry helps
            raise ConfigError(f"camera source 'picamera2': picamera2 cannot be imported: {type(exc).__name__}: {exc}; "
                              "check that numpy and python3-picamera2 come from the same place (apt), e.g. a venv "
                              "made with --system-site-packages without a pip numpy") from None
        cam = None
        try:
            cam = Picamera2()
            self._configure(cam)
            cam.start()
        except Exception as exc:  # libcamera reports a missing or busy camera as RuntimeError/IndexError
            if cam is not None:
                with contextlib.suppress(Exception):
                    cam.close()  # release the camera, or the next open finds it busy
            raise CameraError(f"camera source 'picamera2' cannot be opened: {exc}") from None
        self._cam = cam
        logger.info("camera picamera2 opened (%s %s %dx%d, stride %d)", self._stream, self._format, *self._size,
                    self._stride)

    def _configure(self, cam: Any) -> None:
        """Lores YUV420 in a full-field sensor mode; failing that (a USB camera), the main stream."""
        size = (self.width, self.height)
        slowest_us = round(1_000_000 / min(self.fps, MIN_FPS))
        controls = {"FrameDurationLimits": (round(1_000_000 / self.fps), max(slowest_us, round(1_000_000 / self.fps)))}
        mode = full_field_mode(getattr(cam, "sensor_modes", None) or [], size, self.fps)
        # picamera2 0.3.13+ takes sensor=; older ones choose the mode from the raw stream's size.
        variants = ([{"sensor": {"output_size": mode["size"], "bit_depth": mode["bit_depth"]}},
                     {"raw": {"size": mode["size"]}}] if mode else [{}])
        attempts = [
            # lores may not exceed main; main at the same size keeps the ISP's work and memory small.
            ("lores", dict(main={"size": size, "format": "YUV420"}, lores={"size": size, "format": "YUV420"})),
            ("main", dict(main={"size": size, "format": "YUV420"})),  # no lores: USB cameras
            ("main", dict(main={"size": size})),  # and the USB camera's own format
        ]
        errors = []
        for stream, streams in attempts:
            why = _configure_with(cam, streams, variants, controls)
            if why is not None:
                errors.append(f"{stream} {streams[stream].get('format', 'in its own format')}: {why}")
                continue
            config = cam.stream_configuration(stream)
            self._stream, self._format = stream, str(config.get("format", ""))
            self._size, self._stride = tuple(config["size"]), int(config["stride"])
            if mode and stream == "lores":
                logger.info("picamera2 sensor mode %s (full field of view)", mode["size"])
            return
        raise CameraError("; ".join(errors))

    def read(self) -> Frame:
        if self._cam is None:
            raise CameraError("camera source 'picamera2' is not open")
        width, height = self._size
        try:
            if self._format == "YUV420":
                buffer = self._cam.capture_buffer(self._stream, wait=CAPTURE_TIMEOUT_S)
            else:
                image = self._cam.capture_array(self._stream, wait=CAPTURE_TIMEOUT_S)
        except Exception as exc:  # TimeoutError after CAPTURE_TIMEOUT_S, or libcamera's own errors
            raise CameraError(f"camera source 'picamera2' stopped delivering frames: {type(exc).__name__}: {exc}") \
                from None
        if self._format == "YUV420":
            # `height` rows of Y, each `stride` bytes wide, come first; U and V follow and are ignored.
            gray = np.ascontiguousarray(buffer[: self._stride * height].reshape(height, self._stride)[:, :width])
        else:
            gray = _gray(image, self._format)
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


def _configure_with(cam: Any, streams: dict, variants: list[dict], controls: dict) -> str | None:
    """Configure `streams` with the first way of asking for the sensor mode that picamera2 takes; None when done,
    else why it failed."""
    why = "no sensor mode accepted"
    for sensor in variants:
        try:
            cam.configure(cam.create_video_configuration(**streams, **sensor, controls=controls))
            return None
        except TypeError as exc:  # an older picamera2 without sensor=: the next way to ask
            why = str(exc)
        except Exception as exc:  # this stream setup is refused (e.g. no lores on a USB camera)
            return str(exc)
    return why


def full_field_mode(modes: list[dict], size: tuple[int, int], fps: float) -> dict | None:
    """The sensor mode to request: of those that see the whole field (the largest crop_limits), the smallest that
    is at least `size` and runs at `fps`; else the fastest of them. None when the camera lists no modes (USB)."""
    def area(mode: dict) -> int:
        crop = mode.get("crop_limits") or (0, 0, 0, 0)
        return int(crop[2]) * int(crop[3])

    if not modes:
        return None
    widest = max(area(m) for m in modes)
    full = [m for m in modes if area(m) == widest]
    fitting = [m for m in full if m["size"][0] >= size[0] and m["size"][1] >= size[1] and m.get("fps", 0) >= fps]
    if fitting:
        return min(fitting, key=lambda m: m["size"][0] * m["size"][1])
    return max(full, key=lambda m: m.get("fps", 0))


def _gray(image: np.ndarray, fmt: str) -> np.ndarray:
    """8-bit grayscale from a main-stream array: YUYV (H, 2W), 1-channel, or 3/4-channel BGR/RGB-ordered pixels."""
    if fmt.upper() in ("YUYV", "YUY2"):
        return np.ascontiguousarray(image.reshape(image.shape[0], -1)[:, 0::2])
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    # picamera2's "RGB888"/"XRGB8888" arrays are B, G, R(, X) in memory; the weights barely differ for a face.
    return np.ascontiguousarray((image[:, :, 0] * 0.114 + image[:, :, 1] * 0.587 + image[:, :, 2] * 0.299)
                                .astype(np.uint8))

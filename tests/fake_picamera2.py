"""A small stand-in for picamera2's `Picamera2`, behaving as its documentation and source say (no Pi here):

- `sensor_modes`: the modes libcamera lists, each with `size`, `fps`, `crop_limits` (x, y, w, h on the pixel array)
  and `bit_depth`; a Camera Module 2 (IMX219) has full-field binned modes and centre-cropped fast ones. With no
  sensor mode requested, libcamera picks the mode closest to the output size: at 640x480 the 640x480 crop.
- `create_video_configuration(main=, lores=, raw=, sensor=, controls=)`: `sensor={"output_size", "bit_depth"}`
  exists from picamera2 0.3.13 on (`old=True` models an older one: TypeError); lores may not exceed main.
- `stream_configuration(name)`: size, format and `stride`, which libcamera pads to a multiple of 64 bytes.
- `capture_buffer(name, wait=)` / `capture_array(name, wait=)`: `wait` a number is a timeout, after which picamera2
  raises TimeoutError (`hang=True` models a camera that stopped delivering).
- A USB camera (`usb=True`) lists no sensor modes, has no lores stream and no YUV420: its main stream is YUYV,
  an (H, 2W) array of Y, U, Y, V bytes.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

IMX219_MODES = [
    {"format": "SRGGB10_CSI2P", "size": (640, 480), "fps": 103.33, "crop_limits": (1000, 752, 1280, 960),
     "bit_depth": 10},
    {"format": "SRGGB10_CSI2P", "size": (1640, 1232), "fps": 41.85, "crop_limits": (0, 0, 3280, 2464), "bit_depth": 10},
    {"format": "SRGGB10_CSI2P", "size": (1920, 1080), "fps": 47.57, "crop_limits": (680, 692, 1920, 1080),
     "bit_depth": 10},
    {"format": "SRGGB10_CSI2P", "size": (3280, 2464), "fps": 21.19, "crop_limits": (0, 0, 3280, 2464), "bit_depth": 10},
]


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


class FakePicamera2:
    instances: ClassVar[list[FakePicamera2]] = []
    usb = False
    old = False
    hang = False

    def __init__(self) -> None:
        self.sensor_modes = [] if self.usb else [dict(m) for m in IMX219_MODES]
        self.config: dict = {}
        self.mode: dict | None = None
        self.started = self.closed = False
        self.waits: list = []
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict | None = None, lores: dict | None = None, raw: dict | None = None,
                                   controls: dict | None = None, **kwargs) -> dict:
        if "sensor" in kwargs and self.old:
            raise TypeError("create_video_configuration() got an unexpected keyword argument 'sensor'")
        unknown = set(kwargs) - {"sensor"}
        if unknown:
            raise TypeError(f"unexpected keyword arguments {unknown}")
        main = dict(main or {})
        main.setdefault("format", "YUYV" if self.usb else "XBGR8888")
        return {"main": main, "lores": lores, "raw": raw, "sensor": kwargs.get("sensor"), "controls": controls or {}}

    def configure(self, config: dict) -> None:
        if self.usb and config["lores"] is not None:
            raise RuntimeError("lores stream is not supported for USB cameras")
        if self.usb and config["main"]["format"] not in ("YUYV", "MJPEG"):
            raise RuntimeError(f"format {config['main']['format']} not supported by this camera")
        if config["lores"] is not None:
            lw, lh = config["lores"]["size"]
            mw, mh = config["main"]["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        wanted = (config["sensor"] or {}).get("output_size") or (config["raw"] or {}).get("size")
        if self.sensor_modes:
            if wanted is not None:
                self.mode = next(m for m in self.sensor_modes if m["size"] == tuple(wanted))
            else:  # libcamera: the mode closest to the output size
                size = config["main"]["size"]
                self.mode = min(self.sensor_modes, key=lambda m: abs(m["size"][0] - size[0]) + abs(m["size"][1] - size[1]))
        self.config = config

    def stream_configuration(self, name: str) -> dict:
        stream = self.config[name]
        width, height = stream["size"]
        bytes_per_pixel = 2 if stream["format"] == "YUYV" else 4 if stream["format"].startswith("X") else 1
        return {"size": (width, height), "format": stream["format"], "stride": _align(width * bytes_per_pixel)}

    def start(self) -> None:
        self.started = True

    def _wait(self, wait) -> None:
        self.waits.append(wait)
        if self.hang:
            if isinstance(wait, (int, float)) and not isinstance(wait, bool):
                raise TimeoutError("timed out waiting for the camera")  # what Job.get_result(timeout) raises
            raise AssertionError("a capture without a timeout would block forever")

    def capture_buffer(self, name: str = "main", wait=None) -> np.ndarray:
        self._wait(wait)
        config = self.stream_configuration(name)
        width, height = config["size"]
        stride = config["stride"]
        y = np.full((height, stride), 255, np.uint8)  # padding at the end of each row
        y[:, :width] = (np.arange(width) % 200).astype(np.uint8)[np.newaxis, :]
        chroma = np.full((height // 2, stride), 77, np.uint8)  # U and V: must not leak into the image
        return np.concatenate([y, chroma]).ravel()

    def capture_array(self, name: str = "main", wait=None) -> np.ndarray:
        self._wait(wait)
        width, height = self.config[name]["size"]
        yuyv = np.full((height, width * 2), 128, np.uint8)  # U and V bytes
        yuyv[:, 0::2] = (np.arange(width) % 200).astype(np.uint8)[np.newaxis, :]
        return yuyv

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

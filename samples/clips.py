"""Short test clips of faces that move, approach, turn and change expression, made on demand (not committed).

    python samples/clips.py DIR        # writes DIR/moving.mp4, approaching.mp4, turning.mp4, smile.mp4

Made from the test photographs in tests/data (public domain / CC0, see samples/README.md; the clips carry the
same terms): the smiling astronaut (NASA, Eileen Collins), Grace Hopper (US Navy portrait, a neutral face) and the
coffee cup as a background with no face. 640x480 at 30 fps, MPEG-4 Part 2 (mp4v), each under 2 MB.

- moving:      the astronaut's head crosses the frame fast (up to ~700 px/s), 6 s
- approaching: a head that comes from far (50 px face) to close (300 px), 5 s
- turning:     a head that turns away and back twice (simulated yaw: the face squeezed sideways, up to ~70
               degrees), 6 s
- smile:       Grace Hopper (neutral) for 3 s, a 0.2 s cross-fade, then the astronaut (smiling) for 3 s in the
               same place and size: a face going from neutral to a smile, for the emotion-change latency
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SAMPLE_CLIP = Path(__file__).resolve().parent / "faces.mp4"
SIZE = (640, 480)
FPS = 30
# Head crops (x, y, side) around the face each photograph's Haar detection finds, with room for the hair and chin.
HEADS = {"astronaut": ("astronaut.jpg", (124, 14, 200), 104), "hopper": ("grace_hopper.jpg", (66, 16, 400), 224)}
NAMES = ("moving", "approaching", "turning", "smile")


def _head(name: str) -> tuple[np.ndarray, float]:
    """A square BGR head crop and the ratio of the face's side to the crop's."""
    file, (x, y, side), face = HEADS[name]
    image = cv2.imread(str(DATA / file), cv2.IMREAD_COLOR)
    return image[y:y + side, x:x + side], face / side


def _background() -> np.ndarray:
    return cv2.resize(cv2.imread(str(DATA / "coffee.jpg"), cv2.IMREAD_COLOR), SIZE, interpolation=cv2.INTER_AREA)


def _paste(frame: np.ndarray, head: np.ndarray, cx: float, cy: float, width: int, height: int) -> None:
    """Put `head` resized to width x height with its centre at (cx, cy), clipped to the frame."""
    patch = cv2.resize(head, (max(1, width), max(1, height)), interpolation=cv2.INTER_AREA)
    x0, y0 = round(cx - width / 2), round(cy - height / 2)
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(SIZE[0], x0 + width), min(SIZE[1], y0 + height)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = patch[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


def moving() -> Iterator[np.ndarray]:
    head, ratio = _head("astronaut")
    side = round(110 / ratio)
    for i in range(6 * FPS):
        t = i / FPS
        frame = _background()
        _paste(frame, head, 320 + 200 * math.sin(1.7 * t) * math.cos(0.4 * t), 240 + 90 * math.sin(2.3 * t), side, side)
        yield frame


def approaching() -> Iterator[np.ndarray]:
    head, ratio = _head("astronaut")
    for i in range(5 * FPS):
        t = i / (5 * FPS - 1)
        face = 50 * (300 / 50) ** t  # a steady approach: the face grows by the same factor every frame
        side = round(face / ratio)
        frame = _background()
        _paste(frame, head, 320 + 60 * math.sin(3 * t), 240 + 30 * t, side, side)
        yield frame


def turning() -> Iterator[np.ndarray]:
    head, ratio = _head("astronaut")
    side = round(130 / ratio)
    for i in range(6 * FPS):
        yaw = math.radians(70) * abs(math.sin(math.pi * i / (3 * FPS)))  # away and back, twice
        frame = _background()
        _paste(frame, head, 320 + 40 * math.sin(yaw), 240, max(1, round(side * math.cos(yaw))), side)
        yield frame


def smile() -> Iterator[np.ndarray]:
    neutral, ratio_n = _head("hopper")
    happy, ratio_h = _head("astronaut")
    face = 160
    for i in range(round(6.2 * FPS)):
        t = i / FPS
        a = min(1.0, max(0.0, (t - 3.0) / 0.2))  # 0 until 3 s, 1 after 3.2 s
        frame_n, frame_h = _background(), _background()
        _paste(frame_n, neutral, 320, 230, round(face / ratio_n), round(face / ratio_n))
        _paste(frame_h, happy, 320, 230, round(face / ratio_h), round(face / ratio_h))
        yield cv2.addWeighted(frame_n, 1 - a, frame_h, a, 0) if 0 < a < 1 else (frame_h if a >= 1 else frame_n)


SMILE_AT_S = 3.0  # when the smile begins in smile.mp4 (the cross-fade ends 0.2 s later)
CLIPS: dict[str, Callable[[], Iterator[np.ndarray]]] = {
    "moving": moving, "approaching": approaching, "turning": turning, "smile": smile}


def rotated_phone_clip(path: Path, frames: int = 45) -> Path:
    """The sample clip's first frames stored sideways (turned 90 degrees counterclockwise, 480x640), with the MP4
    display matrix that tells a player to turn them 90 degrees clockwise: what a phone held upright records."""
    source = cv2.VideoCapture(str(SAMPLE_CLIP))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (480, 640))
    for _ in range(frames):
        ok, image = source.read()
        if not ok:
            raise RuntimeError(f"{SAMPLE_CLIP}: fewer than {frames} frames")
        writer.write(cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE))
    writer.release()
    source.release()
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")  # the track header: size, type, version/flags, times, ids, then the 3x3 matrix
    matrix = tkhd + 4 + 4 + (32 if data[tkhd + 4] == 1 else 20) + 16
    one, minus_one = 0x10000, -0x10000 & 0xFFFFFFFF  # 16.16 fixed point; the last entry is 2.30
    data[matrix:matrix + 36] = struct.pack(">9I", 0, one, 0, minus_one, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


def write(name: str, folder: Path) -> Path:
    """Write clip `name` into `folder` (once; an existing file is kept) and return its path."""
    path = Path(folder) / f"{name}.mp4"
    if path.is_file():
        return path
    tmp = path.with_suffix(".part.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {tmp}: this OpenCV has no mp4v encoder")
    for frame in CLIPS[name]():
        writer.write(frame)
    writer.release()
    tmp.replace(path)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for clip in NAMES:
        written = write(clip, out)
        print(f"{written}: {written.stat().st_size / 1e6:.2f} MB")

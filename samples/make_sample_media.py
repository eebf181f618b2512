"""Make edged's sample clip and test photos from public-domain pictures that ship with scikit-image and matplotlib.

    python samples/make_sample_media.py          # writes samples/faces.mp4, faces-30fps.mp4 and tests/data/*.jpg

Sources (all public domain, see samples/README.md): `skimage.data.astronaut()` (NASA, Eileen Collins),
matplotlib's `sample_data/grace_hopper.jpg` (US Navy), `skimage.data.coffee()` and `skimage.data.rocket()`
(no faces). The clip is 12 s of 640x480 at 15 fps with simulated camera motion (pan and zoom): a face,
no face, another face, no face, so faces appear and leave. `faces-30fps.mp4` is the same storyboard twice as fast
(6 s) at 30 fps, a camera's rate, for the real-time benchmark.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import skimage.data

ROOT = Path(__file__).resolve().parent.parent
SIZE = (640, 480)  # width, height in pixels
FPS = 15
# (file name, frames per second, speed-up of the storyboard): the 30 fps clip, for the real-time benchmark, plays
# the story twice as fast, so that it stays under 2 MB (OpenCV's mp4v encoder has no bit-rate setting).
CLIPS = (("faces.mp4", FPS, 1.0), ("faces-30fps.mp4", 30, 2.0))

# (picture, seconds, crop rectangle (x, y, w, h) in picture pixels at the start, at the end); rectangles are 4:3.
Shot = tuple[str, float, tuple[float, float, float, float], tuple[float, float, float, float]]
STORYBOARD: list[Shot] = [
    ("astronaut", 4.0, (0, 0, 512, 384), (96, 24, 320, 240)),  # slow zoom onto the smiling face
    ("coffee", 2.0, (0, 0, 400, 300), (200, 100, 400, 300)),  # pan across a cup: nobody in view
    ("grace_hopper", 4.0, (0, 30, 512, 384), (40, 50, 440, 330)),  # a second person, zooming in
    ("rocket", 2.0, (0, 0, 560, 420), (80, 7, 560, 420)),  # pan, nobody in view
]


def pictures() -> dict[str, np.ndarray]:
    """The source pictures as BGR uint8 arrays."""
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    rgb = {"astronaut": skimage.data.astronaut(), "coffee": skimage.data.coffee(), "rocket": skimage.data.rocket()}
    found = {name: cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for name, image in rgb.items()}
    found["grace_hopper"] = cv2.imread(str(hopper), cv2.IMREAD_COLOR)
    return found


def render(picture: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """The crop `rect` (x, y, w, h; sub-pixel) of `picture`, scaled to SIZE: one frame of a moving camera."""
    x, y, w, _ = rect
    scale = SIZE[0] / w
    matrix = np.array([[scale, 0, -x * scale], [0, scale, -y * scale]], dtype=np.float64)
    return cv2.warpAffine(picture, matrix, SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def write_clip(path: Path, images: dict[str, np.ndarray], fps: int = FPS, speed: float = 1.0) -> int:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    if not writer.isOpened():
        raise SystemExit(f"cannot write {path}: this OpenCV has no mp4v encoder")
    frames = 0
    for name, seconds, start, end in STORYBOARD:
        count = round(seconds / speed * fps)
        for i in range(count):
            t = i / max(1, count - 1)
            t = t * t * (3 - 2 * t)  # ease in and out, like a hand on a pan-tilt head
            writer.write(render(images[name], (1 - t) * np.array(start) + t * np.array(end)))
            frames += 1
    writer.release()
    return frames


def main() -> None:
    images = pictures()
    data = ROOT / "tests" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "grace_hopper", "coffee"):
        cv2.imwrite(str(data / f"{name}.jpg"), images[name], [cv2.IMWRITE_JPEG_QUALITY, 90])
    for name, fps, speed in CLIPS:
        clip = ROOT / "samples" / name
        frames = write_clip(clip, images, fps, speed)
        print(f"{clip}: {frames} frames at {fps} fps, {frames / fps:.1f} s, {clip.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

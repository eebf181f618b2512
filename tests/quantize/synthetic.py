"""Tiny, learnable stand-ins for FER2013: class k is a grating at angle k*pi/7 plus noise.

Real FER2013 takes hours to learn; these take seconds, so tests can train, convert and check real models.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from quantize.labels import EMOTIONS


def gratings(n: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images (n, size, size) and balanced labels (n,)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(EMOTIONS)
    rng.shuffle(y)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x = np.empty((n, size, size), dtype=np.uint8)
    for i, label in enumerate(y):
        angle = label * np.pi / len(EMOTIONS)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.6 + rng.uniform(0, 2 * np.pi))
        img = 128 + 90 * wave + rng.normal(0, 20, (size, size))
        x[i] = np.clip(img, 0, 255).astype(np.uint8)
    return x, y


def write_csv(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A FER2013-format CSV (emotion,pixels,Usage) holding the given splits."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, (x, y) in splits.items():
            for img, label in zip(x, y, strict=True):
                writer.writerow([int(label), " ".join(map(str, img.ravel())), usage])
    return path


def write_folders(root: Path, split: str, x: np.ndarray, y: np.ndarray, case=str.lower) -> Path:
    """`root/split/<class>/<i>.png` image folders."""
    import cv2

    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / split / case(EMOTIONS[label])
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)
    return root

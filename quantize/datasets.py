"""Labelled face data in three layouts behind one function, `load_split`.

- FER2013 CSV: columns `emotion,pixels,Usage`, one row per image, `pixels` space-separated 0-255.
- Image folders: `<root>/<split>/<class>/*.png|jpg`, class folders named as in FER2013, any case.
- npz: `x_<key>` (N, H, W) uint8 and `y_<key>` (N,) arrays, as in shared/data/README.md.

Every loader returns `Faces`: uint8 images (N, H, W) and labels in FER2013 order (see labels.py).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantize.errors import DataError
from quantize.labels import EMOTIONS

# FER2013's split names and the spellings people use for them (folder names, npz keys).
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "Training": ("training", "train"),
    "PublicTest": ("publictest", "public", "val", "validation"),
    "PrivateTest": ("privatetest", "private"),
}
NPZ_KEYS = {"Training": "train", "PublicTest": "public", "PrivateTest": "private"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class Faces:
    """Grayscale face images (N, H, W) uint8 and labels (N,) int64 in 0..6."""

    x: np.ndarray
    y: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"{self.source}: {len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.x.shape[1]), int(self.x.shape[2])

    def resized(self, height: int, width: int) -> Faces:
        """The same faces at height x width (bilinear), or self when already that size."""
        if self.size == (height, width):
            return self
        import cv2

        x = np.stack([cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR) for img in self.x])
        return Faces(x, self.y, self.source)

    def subset(self, index: np.ndarray) -> Faces:
        return Faces(self.x[index], self.y[index], self.source)

    def stratified_sample(self, n: int, seed: int = 0) -> Faces:
        """Exactly n faces with the class mix of the whole set (largest remainders; each class at least once)."""
        if n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        labels, counts = np.unique(self.y, return_counts=True)
        quota = counts * n / len(self)
        take = np.maximum(1, np.floor(quota).astype(int))
        for i in np.argsort(take - quota)[: max(0, n - take.sum())]:
            take[i] += 1
        picked = [rng.choice(np.flatnonzero(self.y == label), size=min(k, c), replace=False)
                  for label, k, c in zip(labels, take, counts, strict=True)]
        return self.subset(np.sort(np.concatenate(picked)))


def canonical_split(name: str) -> str:
    """FER2013's name for a split given in any usual spelling ("train" -> "Training")."""
    low = name.lower()
    for canonical, aliases in SPLIT_ALIASES.items():
        if low in aliases:
            return canonical
    return name


def load_split(path: str | Path, split: str) -> Faces:
    """Load one split of a CSV file, an npz file or an image-folder tree."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        return _load_folders(path, split)
    if path.suffix.lower() == ".csv":
        return _load_csv(path, split)
    if path.suffix.lower() == ".npz":
        return _load_npz(path, split)
    raise DataError(f"{path}: unknown data format (expected a .csv file, a .npz file or a folder of images)")


def _load_npz(path: Path, split: str) -> Faces:
    key = NPZ_KEYS.get(canonical_split(split), split)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable npz file ({exc})") from None
    with archive:
        names = set(archive.files)
        if f"x_{key}" not in names or f"y_{key}" not in names:
            have = sorted(n[2:] for n in names if n.startswith("x_"))
            raise DataError(f"{path}: no split {split!r} (arrays x_{key}/y_{key}); it has {have}")
        x, y = archive[f"x_{key}"], archive[f"y_{key}"]
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(f"{path}: x_{key} must be uint8 (N, H, W), got {x.dtype} {x.shape}")
    _check_labels(y, f"{path}: y_{key}")
    return Faces(x, y.astype(np.int64), f"{path}:{key}")


def _check_labels(y: np.ndarray, where: str) -> None:
    bad = np.flatnonzero((y < 0) | (y >= len(EMOTIONS)))
    if len(bad):
        raise DataError(f"{where}: label {y[bad[0]]} at index {bad[0]} is outside 0..{len(EMOTIONS) - 1}")


def _load_csv(path: Path, split: str) -> Faces:
    want = canonical_split(split)
    images: list[np.ndarray] = []
    labels: list[int] = []
    side = None
    splits_seen: set[str] = set()
    # utf-8-sig: spreadsheet programs start a CSV with a byte-order mark, which would otherwise stick to the
    # first column's name; names are also stripped of the spaces some writers put after the commas.
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames:
            reader.fieldnames = [name.strip() for name in reader.fieldnames]
        missing = {"emotion", "pixels"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: header must name columns emotion,pixels[,Usage]; missing {sorted(missing)}")
        has_usage = "Usage" in (reader.fieldnames or ())
        for row in reader:
            line = reader.line_num
            usage = (row.get("Usage") or "").strip() if has_usage else want
            splits_seen.add(usage)
            if canonical_split(usage) != want:
                continue
            label = _parse_emotion(row.get("emotion"), path, line)
            pixels = _parse_pixels(row.get("pixels"), path, line)
            if side is None:
                side = math.isqrt(len(pixels))
                if side * side != len(pixels):
                    raise DataError(f"{path} line {line}: {len(pixels)} pixels is not a square image")
            if len(pixels) != side * side:
                raise DataError(
                    f"{path} line {line}: {len(pixels)} pixels, expected {side * side} ({side}x{side}) like the rows before"
                )
            images.append(pixels.reshape(side, side))
            labels.append(label)
    if not images:
        raise DataError(f"{path}: no rows with Usage {want!r}; Usage values present: {sorted(splits_seen)}")
    return Faces(np.stack(images), np.asarray(labels, dtype=np.int64), f"{path}:{want}")


def _parse_emotion(text: str | None, path: Path, line: int) -> int:
    try:
        label = int((text or "").strip())
    except ValueError:
        raise DataError(f"{path} line {line}: emotion {text!r} is not an integer 0..6") from None
    if not 0 <= label < len(EMOTIONS):
        raise DataError(f"{path} line {line}: emotion {label} is outside 0..6 ({', '.join(EMOTIONS)})")
    return label


def _parse_pixels(text: str | None, path: Path, line: int) -> np.ndarray:
    try:
        values = np.array((text or "").split(), dtype=np.int32)
    except ValueError:
        raise DataError(f"{path} line {line}: pixels must be space-separated integers 0-255") from None
    if values.size == 0:
        raise DataError(f"{path} line {line}: pixels is empty")
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{path} line {line}: pixel values must be 0-255, found {values.min()}..{values.max()}")
    return values.astype(np.uint8)


def _load_folders(root: Path, split: str) -> Faces:
    import cv2

    want = canonical_split(split)
    split_dirs = [d for d in root.iterdir() if d.is_dir()]
    chosen = [d for d in split_dirs if d.name.lower() == split.lower() or canonical_split(d.name) == want]
    if not chosen:
        raise DataError(f"{root}: no folder for split {split!r}; found {sorted(d.name for d in split_dirs)}")
    split_dir = chosen[0]
    images, labels, shape = [], [], None
    for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
        name = class_dir.name.lower()
        if name not in EMOTIONS:
            raise DataError(f"{class_dir}: unknown class folder {class_dir.name!r}; expected one of {', '.join(EMOTIONS)}")
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            img = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise DataError(f"{file}: not a readable image")
            if shape is None:
                shape = img.shape
            elif img.shape != shape:
                raise DataError(f"{file}: image is {img.shape[1]}x{img.shape[0]}, the others are {shape[1]}x{shape[0]}")
            images.append(img)
            labels.append(EMOTIONS.index(name))
    if not images:
        raise DataError(f"{split_dir}: no .png or .jpg images under <class>/ folders")
    return Faces(np.stack(images), np.asarray(labels, dtype=np.int64), str(split_dir))

"""Paths of the test media (see tests/data/README.md for their licence) and of the project's int8 model."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
ASTRONAUT = DATA / "astronaut.jpg"  # one smiling face
GRACE_HOPPER = DATA / "grace_hopper.jpg"  # one face
COFFEE = DATA / "coffee.jpg"  # no face
SAMPLE_CLIP = ROOT / "samples" / "faces.mp4"  # 12 s, 15 fps: astronaut, nobody, Grace Hopper, nobody
MODEL = ROOT / "edged" / "models" / "emotions-int8.tflite"


def require_model() -> Path:
    """The project's int8 emotion model, or skip the test saying why."""
    if not MODEL.is_file() or not MODEL.with_suffix(".json").is_file():
        pytest.skip(f"{MODEL.relative_to(ROOT)} (+ .json sidecar) is absent: make it with `quantize convert`")
    return MODEL

"""Paths of the test media (see tests/data/README.md for their licence) and of the project's int8 model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
ASTRONAUT = DATA / "astronaut.jpg"  # one smiling face
GRACE_HOPPER = DATA / "grace_hopper.jpg"  # one face
COFFEE = DATA / "coffee.jpg"  # no face
SAMPLE_CLIP = ROOT / "samples" / "faces.mp4"  # 12 s, 15 fps: astronaut, nobody, Grace Hopper, nobody
MODEL = ROOT / "edged" / "models" / "emotions-int8.tflite"


def _clips_module():
    spec = importlib.util.spec_from_file_location("edged_sample_clips", ROOT / "samples" / "clips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLIP_NAMES = ("moving", "approaching", "turning", "smile")  # samples/clips.py: made at test time, not committed


def make_clip(name: str, folder: Path) -> Path:
    """Write samples/clips.py's clip `name` (see its licence) into `folder`."""
    return _clips_module().write(name, folder)


def clip_frames(name: str):
    """samples/clips.py's clip `name` as BGR frames (uint8, 480x640x3), made in memory."""
    return _clips_module().CLIPS[name]()


def rotated_clip(path: Path, frames: int = 45) -> Path:
    """samples/clips.py's phone clip: the sample clip stored sideways with an MP4 display matrix."""
    return _clips_module().rotated_phone_clip(path, frames)


def require_model() -> Path:
    """The project's int8 emotion model, or skip the test saying why."""
    if not MODEL.is_file() or not MODEL.with_suffix(".json").is_file():
        pytest.skip(f"{MODEL.relative_to(ROOT)} (+ .json sidecar) is absent: make it with `quantize convert`")
    return MODEL

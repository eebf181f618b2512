"""What flows between the pipeline's stages: detected faces, tracked faces and track events.

Plain dataclasses, no I/O. Boxes are (x, y, w, h) in pixels of the captured frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Box = tuple[int, int, int, int]
EventType = Literal["face_appeared", "emotion_changed", "face_left"]


@dataclass(frozen=True)
class Frame:
    """One captured grayscale frame (H, W) uint8, with its capture time (time.monotonic and UTC epoch seconds)."""

    index: int
    gray: np.ndarray
    captured_mono: float
    captured_utc: float


@dataclass(frozen=True)
class Detection:
    """A face found in one frame, with the classifier's probabilities (label -> 0..1)."""

    box: Box
    scores: dict[str, float]


@dataclass
class Track:
    """A face followed across frames; `scores` are smoothed over time, `emotion` is their argmax."""

    id: int
    box: Box
    scores: dict[str, float]
    emotion: str
    first_seen_utc: float
    last_seen_utc: float
    hits: int = 1
    misses: int = 0
    leader: str | None = None  # the emotion leading the smoothed scores now, when it is not `emotion`
    leader_since_utc: float = 0.0  # since when it has led

    @property
    def confidence(self) -> float:
        return self.scores[self.emotion]

    @property
    def dwell_s(self) -> float:
        return max(0.0, self.last_seen_utc - self.first_seen_utc)


@dataclass(frozen=True)
class TrackEvent:
    """Something a dashboard wants to know about one track: it appeared, its emotion changed, it left."""

    type: EventType
    track: Track
    ts_utc: float
    previous_emotion: str | None = None
    extra: dict = field(default_factory=dict)

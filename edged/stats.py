"""Rolling figures for the stats topic: recent latencies per stage (p50/p95, milliseconds) and a frame rate."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from edged.faces import Frame


class FrameRecorder(Protocol):
    """Told about every processed frame: how many faces, the detect/classify/track/publish times (seconds),
    and when publishing ended (time.monotonic). `edged bench` keeps them all; the daemon has none."""

    def record(self, frame: Frame, faces: int, stage_s: tuple[float, float, float, float], done_mono: float) -> None:
        ...


class Rolling:
    """The last `window` samples of one figure; thread-safe, since the capture thread adds decode times."""

    def __init__(self, window: int = 300) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(value)

    def values(self) -> list[float]:
        """The samples in the window, oldest first."""
        with self._lock:
            return list(self._samples)

    def percentiles(self) -> dict[str, float]:
        """{"p50": ..., "p95": ...} of the window, rounded to 0.01; zeros before the first sample."""
        with self._lock:
            samples = np.fromiter(self._samples, dtype=np.float64, count=len(self._samples))
        if samples.size == 0:
            return {"p50": 0.0, "p95": 0.0}
        p50, p95 = np.percentile(samples, [50, 95])
        return {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}


class Rate:
    """Events per second over the last `window_s` seconds of the monotonic clock.

    The rate follows the clock, not the events: when they stop (a camera lost), it falls to 0 within `window_s`.
    """

    def __init__(self, window_s: float = 5.0) -> None:
        self._times: deque[float] = deque()
        self._window_s = window_s

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self._window_s:
            self._times.popleft()

    def per_second(self, now: float | None = None) -> float:
        """Events per second: the intervals between the events in the window over the time from the first of them
        to `now` (so a pause counts as time with no event)."""
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self._window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = now - self._times[0]
        return round((len(self._times) - 1) / span, 2) if span > 0 else 0.0

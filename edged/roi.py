"""Tracker-guided detection: a full-frame Haar scan every few frames, and in between only around known faces.

A full scan of a 640x480 frame costs ~20 ms on one x86 core (~4x that on a Raspberry Pi 4); a search in a
region around a face found in the previous frame, with the window size bounded around that face's size,
costs a few milliseconds. So most frames search only there, and a full scan runs:

- every `full_scan_every` frames, which is how a face entering the view is found (within
  `full_scan_every / fps` seconds: the default 15 frames is half a second at 30 fps, and keeps full scans to
  under 7% of the frames, which matters on a Raspberry Pi 4, where one is estimated at ~90 ms);
- at once, on the same frame, when a known face is not found in its region (it moved fast, turned, or left),
  so a face is never lost to the shortcut: at worst that frame costs what every frame cost before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edged.faces import Box
from edged.tracker import iou

if TYPE_CHECKING:
    from edged.detector import HaarDetector

# Two boxes overlapping this much (IoU) from neighbouring regions are the same face.
SAME_FACE_IOU = 0.3


def region_around(box: Box, margin: float, shape: tuple[int, ...]) -> Box:
    """The box grown by `margin` times its side on every side, clipped to a frame of `shape` (H, W)."""
    x, y, w, h = box
    side = max(w, h)
    pad = round(margin * side)
    height, width = shape[:2]
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
    return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


class GuidedDetector:
    """Wraps a `HaarDetector`; remembers the faces of the previous frame and searches only around them.

    full_scan_every: frames between two full scans (1 = every frame, i.e. no shortcut).
    margin: how far around a known face to search, as a fraction of its side (0.5 = half a face each way).
    """

    def __init__(self, detector: HaarDetector, full_scan_every: int = 15, margin: float = 0.5) -> None:
        self.detector = detector
        self.full_scan_every = max(1, int(full_scan_every))
        self.margin = float(margin)
        self.full_scans = 0
        self.region_scans = 0
        self._known: list[Box] = []
        self._since_full = self.full_scan_every  # the first frame gets a full scan

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Faces in a grayscale (H, W) uint8 frame, as (x, y, w, h) boxes in frame pixels."""
        if self._since_full >= self.full_scan_every or not self._known:
            if self._since_full >= self.full_scan_every:
                return self._full(gray)
            self._since_full += 1
            return []  # nobody was in view: the next full scan looks for newcomers
        found: list[Box] = []
        for known in self._known:
            near = self.detector.detect_near(gray, region_around(known, self.margin, gray.shape), max(known[2:]))
            self.region_scans += 1
            if not near:
                return self._full(gray)  # lost it here: look everywhere before telling the tracker it is gone
            found += [box for box in near if all(iou(box, other) < SAME_FACE_IOU for other in found)]
        self._known = found
        self._since_full += 1
        return found

    def _full(self, gray: np.ndarray) -> list[Box]:
        self._known = self.detector.detect(gray)
        self.full_scans += 1
        self._since_full = 1
        return self._known

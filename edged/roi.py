"""Tracker-guided detection: a full-frame Haar scan every few frames, and in between only around known faces.

A full scan of a 640x480 frame costs ~20 ms on one x86 core (~4x that on a Raspberry Pi 4); a search in a
region around a face found in the previous frame, with the window size bounded around that face's size,
costs a few milliseconds. So most frames search only there, and a full scan runs:

- every `full_scan_every` frames, which is how a face entering the view is found (within
  `full_scan_every / fps` seconds: the default 15 frames is half a second at 30 fps, and keeps full scans to
  under 7% of the frames, which matters on a Raspberry Pi 4, where one is estimated at ~90 ms);
- at once, on the same frame, when a known face is not found in its region (it moved fast, turned, or left),
  and then on every frame until it is found again, for up to `full_scan_every` frames (a face that the full scan
  missed once, half turned, is back on the next frame a full scan would find it): so a face once found is never
  lost to the shortcut, and at worst such a frame costs what every frame cost before.

What it trades, exactly: a face that enters the view (or grows big enough, or turns to the camera) while no face
is missing is found by the next periodic full scan, up to `full_scan_every - 1` frames later than a full scan of
every frame would find it. `bench/guided.py` counts both on every test clip.

With `background=` a second `HaarDetector`, the periodic full scan runs beside the processing loop, in a thread of
its own (OpenCV releases the GIL), on the frame it was due: no frame waits for it, and the faces it finds join the
search one or two frames later. That is what keeps a Raspberry Pi 4's per-frame p95 under 50 ms. A file processed
as fast as possible scans in line instead, so its results do not depend on thread timing.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from edged.faces import Box
from edged.tracker import iou

if TYPE_CHECKING:
    from edged.detector import HaarDetector

# Two boxes overlapping this much (IoU) from neighbouring regions are the same face.
SAME_FACE_IOU = 0.3
# A face is "found again" by a full scan when a face's centre is within this many face sides of where it was.
MISSING_MARGIN = 1.0
# Frames of full scans after a known face went missing (measured on the test clips: fewer loses frames that a full
# scan of every frame finds on the approaching clip, where a small face flickers in and out of Haar's reach).
RETRY_FRAMES = 5


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
    background: a second detector (its own cascade, since one is not safe in two threads) for periodic full scans
    in a thread beside the loop; None scans in line. `scan_ms` keeps the cost of each full scan (milliseconds).
    """

    def __init__(self, detector: HaarDetector, full_scan_every: int = 15, margin: float = 0.5,
                 background: HaarDetector | None = None, retry_frames: int | None = None) -> None:
        self.detector = detector
        self.full_scan_every = max(1, int(full_scan_every))
        self.margin = float(margin)
        self.retry_frames = RETRY_FRAMES if retry_frames is None else max(1, int(retry_frames))
        self.full_scans = 0
        self.region_scans = 0
        self.scan_ms: list[float] = []  # every full scan's time, in line or beside the loop (bounded below)
        self._known: list[Box] = []
        self._frame = 0  # frames seen; the first gets a full scan
        self._lost: list[tuple[Box, int]] = []  # faces gone missing lately, and for how many full scans
        self._background = background
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="edged-scan") if background is not None else None
        self._scan: Future[list[Box]] | None = None

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Faces in a grayscale (H, W) uint8 frame, as (x, y, w, h) boxes in frame pixels."""
        self._join_background(gray.shape)
        due = self._frame % self.full_scan_every == 0  # periodic scans keep their own beat, whatever else happens
        self._frame += 1
        if due or self._lost:  # due, or a face went missing lately: look everywhere until it is back
            if self._pool is None:
                return self._full(gray)
            self._scan_beside(gray)
        found: list[Box] = []
        for known in self._known:
            near = self._near(gray, known)
            if not near:  # lost it here: look everywhere before telling the tracker it is gone
                if self._pool is None:
                    return self._full(gray)
                self._lost.append((known, 0))
                self._scan_beside(gray)
                continue
            found += [box for box in near if all(iou(box, other) < SAME_FACE_IOU for other in found)]
        self._known = found
        return found

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _scan_beside(self, gray: np.ndarray) -> None:
        if self._scan is None and self._pool is not None and self._background is not None:
            self._scan = self._pool.submit(self._timed, self._background, gray)

    def _join_background(self, shape: tuple[int, ...]) -> None:
        """Take in a finished background scan: faces not known yet join (newcomers, missing ones found again)."""
        if self._scan is None or not self._scan.done():
            return
        scan, self._scan = self._scan, None
        self.full_scans += 1
        found = scan.result()
        self._age_missing(found, shape)
        self._known += [box for box in found if all(iou(box, known) < SAME_FACE_IOU for known in self._known)]

    def _timed(self, detector: HaarDetector, gray: np.ndarray) -> list[Box]:
        started = time.perf_counter()
        boxes = detector.detect(gray)
        if len(self.scan_ms) < 100_000:
            self.scan_ms.append((time.perf_counter() - started) * 1000.0)
        return boxes

    def _near(self, gray: np.ndarray, box: Box) -> list[Box]:
        self.region_scans += 1
        return self.detector.detect_near(gray, region_around(box, self.margin, gray.shape), max(box[2:]))

    def _full(self, gray: np.ndarray) -> list[Box]:
        found = self._timed(self.detector, gray)
        self.full_scans += 1
        self._lost += [(box, 0) for box in self._known]  # known faces this scan does not find again go missing
        self._age_missing(found, gray.shape)
        self._known = found
        return found

    def _age_missing(self, found: list[Box], shape: tuple[int, ...]) -> None:
        """After a full scan: faces missing lately that it found near where they were are back; the others stay
        missing (so the next frames get full scans too) for up to retry_frames scans, since Haar misses a
        half-turned or small face now and then."""
        self._lost = [(box, age + 1) for box, age in self._lost if age < self.retry_frames and
                      not any(_inside(f, region_around(box, MISSING_MARGIN, shape)) for f in found)]


def _inside(box: Box, region: Box) -> bool:
    """Whether the centre of `box` lies in `region`."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return region[0] <= cx < region[0] + region[2] and region[1] <= cy < region[1] + region[3]

"""Face detection: OpenCV's Haar cascade on a downscaled grayscale frame; boxes come back in frame pixels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from edged.errors import CascadeError
from edged.faces import Box
from edged.paths import readable_file, why_unreadable

if TYPE_CHECKING:
    from edged.settings import DetectorSettings

logger = logging.getLogger(__name__)

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# pip's OpenCV ships cv2.data; Debian's python3-opencv (+ opencv-data) and JetPack install them here.
SYSTEM_CASCADE_DIRS = (Path("/usr/share/opencv4/haarcascades"), Path("/usr/share/opencv/haarcascades"))


class FaceDetector(Protocol):
    def detect(self, gray: np.ndarray) -> list[Box]: ...


# The frontal-face cascade's window is 24x24: a region is scaled so the face it expects is a bit larger.
REGION_FACE_PX = 56
# A face in a region may have grown or shrunk by this factor since it was last found.
REGION_SIZE_RANGE = 1.4


def find_cascade(configured: Path | None = None) -> Path:
    """The configured cascade file, else the frontal-face cascade of pip's or the system's OpenCV.

    ConfigError naming EDGED_DETECTOR__CASCADE when the configured file cannot be read (edged.paths); CascadeError
    when there is none to find.
    """
    if configured is not None:
        return readable_file(configured, "EDGED_DETECTOR__CASCADE")
    data = getattr(cv2, "data", None)
    dirs = ([Path(data.haarcascades)] if data is not None else []) + list(SYSTEM_CASCADE_DIRS)
    for folder in dirs:
        if why_unreadable(folder / CASCADE_FILE) is None:
            return folder / CASCADE_FILE
    raise CascadeError(f"no {CASCADE_FILE} found in {', '.join(map(str, dirs))}; install opencv-data "
                       "(apt) or set EDGED_DETECTOR__CASCADE to the file")


class HaarDetector:
    """Frontal faces with a Haar cascade; `min_face` is in frame pixels, `downscale` in (0, 1]."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.path = find_cascade(settings.cascade)
        self.downscale = float(settings.downscale)
        self.scale_factor = float(settings.scale_factor)
        self.min_neighbors = int(settings.min_neighbors)
        self.min_face = int(settings.min_face)
        self._small: np.ndarray | None = None  # the downscaled frame, reused while the frame size stays
        cv2.setNumThreads(int(settings.threads))  # process-wide; the daemon's CPU budget is set by config
        try:
            self._cascade = cv2.CascadeClassifier(str(self.path))
        except cv2.error as exc:
            raise CascadeError(f"Haar cascade {self.path} cannot be loaded: {exc}") from None
        if self._cascade.empty():
            raise CascadeError(f"Haar cascade {self.path} loaded empty (not a cascade XML file?)")
        logger.debug("cascade %s loaded", self.path)

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Faces in a grayscale (H, W) uint8 frame, as (x, y, w, h) boxes in that frame's pixels."""
        scale = self.downscale
        small = gray if scale == 1.0 else self._downscale(gray, scale)
        min_side = max(1, round(self.min_face * scale))
        found = self._cascade.detectMultiScale(small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(min_side, min_side))
        return to_frame(found, (0, 0), scale, gray.shape)

    def detect_near(self, gray: np.ndarray, region: Box, face_side: int) -> list[Box]:
        """Faces of about `face_side` frame pixels inside `region` (x, y, w, h) of the frame, in frame pixels.

        The region is scaled so the expected face is REGION_FACE_PX wide (never more than `downscale`, so a
        region costs at most what the same area costs in a full scan), and the cascade only tries window sizes
        within REGION_SIZE_RANGE of it: a few scales of a small image instead of the whole pyramid of the frame.
        """
        x, y, w, h = region
        if w < 2 or h < 2:  # a region off the frame (the camera came back at another size): nothing there
            return []
        scale = min(self.downscale, REGION_FACE_PX / max(1, face_side))
        crop = gray[y:y + h, x:x + w]
        small = cv2.resize(crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        expected = face_side * scale
        low = max(round(self.min_face * scale), round(expected / REGION_SIZE_RANGE), 1)
        high = max(low + 1, round(expected * REGION_SIZE_RANGE))
        found = self._cascade.detectMultiScale(small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(low, low), maxSize=(high, high))
        return to_frame(found, (x, y), scale, gray.shape)

    def _downscale(self, gray: np.ndarray, scale: float) -> np.ndarray:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        if self._small is None or self._small.shape != (size[1], size[0]):
            self._small = np.empty((size[1], size[0]), dtype=np.uint8)
        return cv2.resize(gray, size, dst=self._small, interpolation=cv2.INTER_AREA)


def to_frame(found: np.ndarray | tuple, origin: tuple[int, int], scale: float, shape: tuple[int, ...]) -> list[Box]:
    """Boxes the cascade found in a scaled image whose top-left corner is `origin` in the frame, in frame pixels
    (clipped to the frame of `shape` (H, W))."""
    height, width = shape[:2]
    ox, oy = origin
    boxes: list[Box] = []
    for x, y, w, h in np.asarray(found).reshape(-1, 4):
        x0, y0 = max(0, ox + round(x / scale)), max(0, oy + round(y / scale))
        x1, y1 = min(width, ox + round((x + w) / scale)), min(height, oy + round((y + h) / scale))
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1 - x0, y1 - y0))
    return boxes

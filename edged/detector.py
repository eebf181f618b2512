"""Face detection: OpenCV's Haar cascade on a downscaled grayscale frame; boxes come back in frame pixels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from edged.errors import CascadeError
from edged.faces import Box

if TYPE_CHECKING:
    from edged.settings import DetectorSettings

logger = logging.getLogger(__name__)

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# pip's OpenCV ships cv2.data; Debian's python3-opencv (+ opencv-data) and JetPack install them here.
SYSTEM_CASCADE_DIRS = (Path("/usr/share/opencv4/haarcascades"), Path("/usr/share/opencv/haarcascades"))


class FaceDetector(Protocol):
    def detect(self, gray: np.ndarray) -> list[Box]: ...


def find_cascade(configured: Path | None = None) -> Path:
    """The configured cascade file, else the frontal-face cascade of pip's or the system's OpenCV."""
    if configured is not None:
        if not Path(configured).is_file():
            raise CascadeError(f"Haar cascade {configured} does not exist (EDGED_DETECTOR__CASCADE)")
        return Path(configured)
    data = getattr(cv2, "data", None)
    dirs = ([Path(data.haarcascades)] if data is not None else []) + list(SYSTEM_CASCADE_DIRS)
    for folder in dirs:
        if (folder / CASCADE_FILE).is_file():
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
        small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        min_side = max(1, round(self.min_face * scale))
        found = self._cascade.detectMultiScale(small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(min_side, min_side))
        height, width = gray.shape[:2]
        boxes: list[Box] = []
        for x, y, w, h in np.asarray(found).reshape(-1, 4):
            x0, y0 = max(0, round(x / scale)), max(0, round(y / scale))
            x1, y1 = min(width, round((x + w) / scale)), min(height, round((y + h) / scale))
            boxes.append((x0, y0, x1 - x0, y1 - y0))
        return boxes

"""Haar face detection on real photographs (public domain, see tests/data/README.md)."""

from __future__ import annotations

import cv2
import pytest
from media import ASTRONAUT, COFFEE, GRACE_HOPPER

from edged.detector import HaarDetector
from edged.errors import CascadeError, ConfigError
from edged.settings import DetectorSettings
from edged.tracker import iou


def _gray(path):
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def test_astronaut_has_one_face_in_full_frame_pixels():
    boxes = HaarDetector(DetectorSettings()).detect(_gray(ASTRONAUT))
    assert len(boxes) == 1
    assert iou(boxes[0], (177, 66, 95, 95)) > 0.6  # where the cascade finds it on the full-size photo


def test_downscaled_and_full_size_detection_agree():
    gray = _gray(GRACE_HOPPER)
    half = HaarDetector(DetectorSettings(downscale=0.5)).detect(gray)
    full = HaarDetector(DetectorSettings(downscale=1.0)).detect(gray)
    assert len(half) == len(full) == 1
    assert iou(half[0], full[0]) > 0.7


def test_no_face_in_a_cup_of_coffee():
    assert HaarDetector(DetectorSettings()).detect(_gray(COFFEE)) == []


def test_empty_cascade_is_an_error(tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_text('<?xml version="1.0"?>\n<opencv_storage></opencv_storage>\n')
    with pytest.raises(CascadeError, match="empty"):
        HaarDetector(DetectorSettings(cascade=empty))


def test_missing_cascade_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"^EDGED_DETECTOR__CASCADE=.*missing\.xml: no such file$"):
        HaarDetector(DetectorSettings(cascade=tmp_path / "missing.xml"))

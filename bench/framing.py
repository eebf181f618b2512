"""How FER2013 frames a face, measured against the daemon's Haar boxes, and what framing does to accuracy.

Each PublicTest face (48x48) is upscaled 4x onto a mid-gray canvas twice its size, the daemon's detector
(default settings) runs on it, and the box nearest the centre is compared with the FER2013 image: the
median ratio image side / box side is the crop scale, the median centre offset (in box sides) the shift.
Then the daemon's classifier reads the same faces through the Haar boxes, with the box itself as the crop
(scale 1, before) and with the measured framing (after), against the faces as FER2013 framed them.

    .venv/bin/python bench/framing.py --data ../shared/data/fer2013-train-public.npz [--model M.tflite]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edged.classifier import EmotionClassifier
from edged.detector import HaarDetector
from edged.settings import DetectorSettings

UPSCALE = 4


def canvas(face: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The face upscaled, centred on a gray canvas twice its side: (canvas, face offset, face side)."""
    side = face.shape[0] * UPSCALE
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    out = np.full((2 * side, 2 * side), int(face.mean()), np.uint8)
    out[side // 2:side // 2 + side, side // 2:side // 2 + side] = big
    return out, side // 2, side


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="FER2013 npz/csv/folders with a PublicTest split")
    parser.add_argument("--model", type=Path, default=None, help="int8 model (default: the daemon's)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    from quantize.datasets import load_split

    faces = load_split(args.data, "PublicTest")
    detector = HaarDetector(DetectorSettings())
    frames, boxes, keep = [], [], []
    scales, shifts_x, shifts_y = [], [], []
    for i, face in enumerate(faces.x):
        frame, offset, side = canvas(face)
        found = detector.detect(frame)
        if not found:
            continue
        centre = offset + side / 2
        x, y, w, h = min(found, key=lambda b: abs(b[0] + b[2] / 2 - centre) + abs(b[1] + b[3] / 2 - centre))
        box_side = max(w, h)
        scales.append(side / box_side)
        shifts_x.append((centre - (x + w / 2)) / box_side)
        shifts_y.append((centre - (y + h / 2)) / box_side)
        frames.append(frame)
        boxes.append((x, y, w, h))
        keep.append(i)
    keep = np.asarray(keep)
    framing = {"scale": round(float(np.median(scales)), 3), "shift_x": round(float(np.median(shifts_x)), 3),
               "shift_y": round(float(np.median(shifts_y)), 3)}

    classifier = EmotionClassifier(args.model)
    labels = list(classifier.labels)
    truth = faces.y[keep]

    def accuracy(crop: tuple[float, float, float]) -> float:
        classifier.face_crop = crop
        pred = [labels.index(max(p, key=p.get)) for f, b in zip(frames, boxes, strict=True)
                for p in classifier.classify(f, [b])]
        return float(np.mean(np.asarray(pred) == truth))

    h, w = faces.x.shape[1:]
    classifier.face_crop = (1.0, 0.0, 0.0)  # the whole FER2013 image as the box
    whole = [labels.index(max(p, key=p.get)) for img in faces.x[keep] for p in classifier.classify(img, [(0, 0, w, h)])]
    original = float(np.mean(np.asarray(whole) == truth))
    result = {
        "faces": len(faces), "detected": len(keep), "detected_share": round(len(keep) / len(faces), 4),
        "framing": framing,
        "spread": {"scale_p10_p90": [round(float(np.percentile(scales, q)), 3) for q in (10, 90)],
                   "shift_y_p10_p90": [round(float(np.percentile(shifts_y, q)), 3) for q in (10, 90)]},
        "model": str(classifier.path),
        "accuracy_fer2013_framing": round(original, 4),
        "accuracy_haar_box": round(accuracy((1.0, 0.0, 0.0)), 4),
        "accuracy_haar_measured_framing": round(accuracy((framing["scale"], framing["shift_x"], framing["shift_y"])), 4),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"Haar found {result['detected']} of {result['faces']} PublicTest faces ({result['detected_share']:.1%})")
        print(f"FER2013 framing relative to the Haar box: scale {framing['scale']} (p10-p90 "
              f"{result['spread']['scale_p10_p90']}), shift x {framing['shift_x']}, y {framing['shift_y']} box sides")
        print(f"accuracy on those faces ({classifier.path.name}): FER2013's own framing "
              f"{result['accuracy_fer2013_framing']:.2%}, through Haar with the box as crop "
              f"{result['accuracy_haar_box']:.2%}, with the measured framing {result['accuracy_haar_measured_framing']:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

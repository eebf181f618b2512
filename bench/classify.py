"""Per-face int8 classification time, the daemon's own code path (crop, resize, quantize, invoke).

    .venv/bin/python bench/classify.py [--model models/emotions-int8.tflite] [--threads 1] [--repeats 2000]

Prints the median and p95 per face for one face per invoke and for a batch of 8, on a real photograph
(scikit-image's astronaut, public domain). Run it pinned to one core for the edge figure:
`taskset -c 0 .venv/bin/python bench/classify.py`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2

from edged.classifier import DEFAULT_MODEL, EmotionClassifier

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "astronaut.jpg"
FACE = (170, 20, 120, 120)  # the astronaut's face, (x, y, w, h) in the photo


def per_face_ms(classifier: EmotionClassifier, gray, faces: int, repeats: int) -> list[float]:
    boxes = [FACE] * faces
    classifier.classify(gray, boxes)  # warm up (allocates tensors for this batch size)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        classifier.classify(gray, boxes)
        times.append((time.perf_counter() - started) * 1e3 / faces)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--runtime", default="auto", choices=("auto", "ai-edge-litert", "tflite-runtime"))
    args = parser.parse_args()
    gray = cv2.imread(str(PHOTO), cv2.IMREAD_GRAYSCALE)
    for faces in (1, 8):
        classifier = EmotionClassifier(args.model, threads=args.threads, batch=faces, runtime=args.runtime)
        times = sorted(per_face_ms(classifier, gray, faces, args.repeats // faces))
        p95 = times[int(0.95 * (len(times) - 1))]
        print(f"{args.model.name} on {args.runtime}: {faces} face(s) per invoke, {args.threads} thread(s): "
              f"median {statistics.median(times):.3f} ms/face, p95 {p95:.3f} ms/face")


if __name__ == "__main__":
    main()

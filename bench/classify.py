"""Per-face int8 classification time: the interpreter's invoke alone, and the daemon's whole code path
(crop, resize, quantize, invoke, dequantize) through edged.classifier.

    .venv/bin/python bench/classify.py [--model edged/models/emotions-int8.tflite] [--threads 1] [--repeats 2000]
    .venv/bin/python bench/classify.py --compare A.tflite B.tflite ...   # invoke times side by side, one run

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
import numpy as np

from edged.classifier import EmotionClassifier, interpreter_class
from edged.models import default_model

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


def invoke_ms(model: Path, runtime: str, threads: int, repeats: int) -> list[float]:
    interpreter = interpreter_class(runtime)(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=np.int8))
    interpreter.invoke()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def compare_invokes(models: list[Path], runtime: str, threads: int, repeats: int, block: int = 50) -> None:
    """Invoke times of several models in one run, interleaved in blocks so that load on the machine falls on all
    alike: median wall and thread-CPU time per invoke (CPU time stays meaningful on a busy machine), and the ratio
    of each model's median to the first one's."""
    interpreters = []
    for model in models:
        interpreter = interpreter_class(runtime)(model_path=str(model), num_threads=threads)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=np.int8))
        interpreter.invoke()
        interpreters.append(interpreter)
    wall: list[list[float]] = [[] for _ in models]
    cpu: list[list[float]] = [[] for _ in models]
    for _ in range(max(1, repeats // block)):
        for i, interpreter in enumerate(interpreters):
            for _ in range(block):
                started, started_cpu = time.perf_counter(), time.thread_time()
                interpreter.invoke()
                cpu[i].append((time.thread_time() - started_cpu) * 1e3)
                wall[i].append((time.perf_counter() - started) * 1e3)
    base_wall, base_cpu = statistics.median(wall[0]), statistics.median(cpu[0])
    for model, w, c in zip(models, wall, cpu, strict=True):
        print(f"{model.name}: invoke median {statistics.median(w):.3f} ms wall ({statistics.median(w) / base_wall:.2f}x), "
              f"{statistics.median(c):.3f} ms thread CPU ({statistics.median(c) / base_cpu:.2f}x), {len(w)} invokes")


def report(label: str, times: list[float]) -> None:
    times = sorted(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"{label}: median {statistics.median(times):.3f} ms/face, p95 {p95:.3f} ms/face")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model())
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--runtime", default="auto", choices=("auto", "ai-edge-litert", "tflite-runtime"))
    parser.add_argument("--compare", type=Path, nargs="+", metavar="MODEL",
                        help="only compare these models' invoke times in one interleaved run (wall and CPU time)")
    args = parser.parse_args()
    if args.compare:
        compare_invokes(args.compare, args.runtime, args.threads, args.repeats)
        return
    gray = cv2.imread(str(PHOTO), cv2.IMREAD_GRAYSCALE)
    where = f"{args.model.name} on {args.runtime}, {args.threads} thread(s)"
    report(f"{where}, invoke only", invoke_ms(args.model, args.runtime, args.threads, args.repeats))
    for faces in (1, 8):
        classifier = EmotionClassifier(args.model, threads=args.threads, batch=faces, runtime=args.runtime)
        times = per_face_ms(classifier, gray, faces, args.repeats // faces)
        report(f"{where}, classify() with {faces} face(s) per invoke", times)


if __name__ == "__main__":
    main()

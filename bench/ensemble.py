"""Do these float models help each other? Each alone, each averaged with its mirror image, and all of them averaged.

Averaging softmax scores gains only where the models make different mistakes: a model fine-tuned from another
makes the same ones. Run it before building an ensemble (in the graph, or as the teacher of `quantize distill`) to
see which partners are worth their cost. Float Keras models, the split's faces as FER2013 frames them.

    .venv/bin/python bench/ensemble.py models/emotions-edge.keras previous.keras \
        --data ../shared/data/fer2013-train-public.npz [--split PublicTest] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantize.datasets import load_split
from quantize.keras_io import load_keras, resolve_normalization
from quantize.runners import keras_scores


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent of (N, 7) scores against (N,) labels."""
    return round(100.0 * float((scores.argmax(axis=1) == labels).mean()), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="float Keras models (.keras or .h5)")
    parser.add_argument("--data", required=True, help="FER2013 (.csv, .npz or image folders)")
    parser.add_argument("--split", default="PublicTest", help="split to score (default PublicTest)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args()

    faces = load_split(args.data, args.split)
    results: dict[str, dict[str, float]] = {}
    plain, mirrored = [], []
    for path in args.models:
        model = load_keras(path)
        norm, _ = resolve_normalization(model, path, None, None)
        plain.append(keras_scores(model, faces.x, norm))
        mirrored.append(keras_scores(model, faces.x[:, :, ::-1], norm))
        results[str(path)] = {"plain": accuracy(plain[-1], faces.y),
                              "with_mirror": accuracy(plain[-1] + mirrored[-1], faces.y)}
    results["all averaged"] = {"plain": accuracy(sum(plain), faces.y),
                               "with_mirror": accuracy(sum(plain) + sum(mirrored), faces.y)}
    if args.json:
        print(json.dumps({"split": args.split, "faces": len(faces), "accuracy_pct": results}))
        return
    print(f"{args.split}, {len(faces)} faces: top-1 % alone / averaged with the mirror image")
    for name, acc in results.items():
        print(f"  {acc['plain']:6.2f} / {acc['with_mirror']:6.2f}  {name}")


if __name__ == "__main__":
    main()

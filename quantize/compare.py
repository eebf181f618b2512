"""Evaluate the float and int8 models on the same faces: the numbers behind `quantize check`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quantize import metrics
from quantize.datasets import Faces
from quantize.keras_io import Normalization
from quantize.labels import EMOTIONS, to_fer_index
from quantize.runners import Int8Model, keras_latency_ms, keras_scores


def compare(model, model_path: Path, int8: Int8Model, faces: Faces, norm: Normalization, latency: bool = True,
            labels: tuple[str, ...] = EMOTIONS) -> dict:
    """Accuracy of each model, the drop in points, their agreement, per-class metrics, sizes, latency.

    labels: the emotion each model output stands for (both models share it); metrics are reported per
    FER2013 class, and result["float"]["by_output"] is the float model's confusion (7, 7) of true class
    against raw output index, for the checks in quantize.gate.
    """
    faces = faces.resized(int8.height, int8.width)
    to_fer = to_fer_index(labels)
    float_out = keras_scores(model, faces.x, norm).argmax(axis=1)
    int8_out = int8.scores(faces.x).argmax(axis=1)
    float_pred, int8_pred = to_fer[float_out], to_fer[int8_out]
    result: dict = {"n": len(faces), "data": faces.source, "labels": list(labels)}
    for name, pred, path in (("float", float_pred, model_path), ("int8", int8_pred, int8.path)):
        result[name] = {"file": str(path), "size_bytes": path.stat().st_size, **metrics.summary(faces.y, pred)}
    result["float"]["by_output"] = metrics.confusion(faces.y, float_out).tolist()
    if latency:
        result["float"]["latency_ms"] = keras_latency_ms(model, faces.x, norm)
        result["int8"]["latency_ms"] = int8.latency_ms(faces.x)
    result["drop_pts"] = (result["float"]["accuracy"] - result["int8"]["accuracy"]) * 100
    result["agreement"] = float(np.mean(float_pred == int8_pred))
    result["normalization"] = {"input_scale": norm.scale, "input_offset": norm.offset}
    return result


def mirror_symmetry(int8: Int8Model, faces: Faces, n: int = 64, tolerance_steps: float = 4.0) -> dict:
    """Whether the int8 graph answers the same for a face and its mirror image, as a flip-TTA graph does.

    Runs `n` faces and their mirror images; for each face, the largest output difference in int8 output steps.
    A flip-TTA graph's two branches round differently, so it is not exact: on the shipped model a median of 2
    steps (at most 10), against 38 for the plain model. Returns {"faces", "mirror_steps" (median over the faces),
    "mirror_steps_max", "between_steps" (the same median between different faces), "tta": "flip" (median within
    tolerance_steps), "none", or None when different faces barely change the outputs either (a model answering one
    class for everything): symmetry then says nothing}.
    """
    x = faces.resized(int8.height, int8.width).x[:n]
    plain, mirrored = int8.scores(x), int8.scores(x[:, :, ::-1])
    mirror = np.abs(plain - mirrored).max(axis=1) / int8.out_scale
    between = np.abs(plain - np.roll(plain, 1, axis=0)).max(axis=1) / int8.out_scale
    mirror_steps, between_steps = float(np.median(mirror)), float(np.median(between))
    tta = None if between_steps <= 3 * tolerance_steps else "flip" if mirror_steps <= tolerance_steps else "none"
    return {"faces": len(x), "mirror_steps": round(mirror_steps, 2), "mirror_steps_max": round(float(mirror.max()), 2),
            "between_steps": round(between_steps, 2), "tta": tta}

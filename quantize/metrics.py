"""Classification metrics computed with numpy: accuracy, confusion matrix, per-class P/R/F1."""

from __future__ import annotations

import numpy as np

from quantize.labels import EMOTIONS


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int = len(EMOTIONS)) -> np.ndarray:
    """Counts (classes, classes): rows are true labels, columns predictions."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def summary(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    matrix = confusion(y_true, y_pred)
    tp = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = actual > 0
    return {
        "accuracy": float(tp.sum() / max(1, len(y_true))),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(actual[i])}
            for i, name in enumerate(EMOTIONS)
        },
        "confusion": matrix.tolist(),
    }

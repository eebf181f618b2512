"""Checks of the float model itself: a small drop means nothing when the float model is already wrong.

Three signs, each read from one confusion matrix (true FER2013 class x model output):
- near chance: accuracy less than `min_above_chance_pts` above always answering the commonest class;
- one class: the most frequent answer covers more than `max_one_class_pct` % of the faces (a model fed
  pixels normalized twice answers one class for every face);
- label order: another assignment of names to outputs scores more than `max_order_gain_pts` points above
  the given one, and itself clears the chance check (a model trained with the alphabetical folder order,
  scored in FER2013's).

The label order is judged only on `MIN_ORDER_FACES` faces or more: on fewer, the best of 5040 orders beats
the given one by a few faces' worth by luck alone, and one face is worth more than half a point.

The best assignment is found exactly by trying all 7! = 5040 of them (a few milliseconds with numpy);
with 7 classes that needs no Hungarian solver and no SciPy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from quantize.labels import EMOTIONS, describe, to_fer_index


@dataclass(frozen=True)
class Thresholds:
    """Percentage points and percent, as the CLI flags take them."""

    min_above_chance_pts: float = 10.0
    max_one_class_pct: float = 90.0
    max_order_gain_pts: float = 5.0


@dataclass(frozen=True)
class Finding:
    """One sign of a wrong float model: kind is "near_chance", "one_class" or "label_order"."""

    kind: str
    message: str


MIN_ORDER_FACES = 200

_PERMUTATIONS = np.array(list(itertools.permutations(range(len(EMOTIONS)))), dtype=np.int64)  # (5040, 7)


def best_order(by_output: np.ndarray) -> tuple[tuple[str, ...], int]:
    """The labels (one per model output) that maximize correct answers, and how many that is.

    by_output: counts (7, 7), rows the true FER2013 class, columns the model's output index.
    """
    correct = by_output[_PERMUTATIONS, np.arange(len(EMOTIONS))].sum(axis=1)  # (5040,)
    best = int(np.argmax(correct))
    return tuple(EMOTIONS[i] for i in _PERMUTATIONS[best]), int(correct[best])


def inspect(by_output: np.ndarray, labels: tuple[str, ...], thresholds: Thresholds) -> dict:
    """What the confusion matrix (7, 7; rows true FER2013 class, columns model output) says of the model.

    Returns {"accuracy", "chance", "commonest", "top_answer", "top_share", "best_labels", "best_accuracy",
    "order_checked", "order_note", "findings": [Finding...]}; accuracies and shares are fractions 0-1;
    order_note says why the label order was not judged (None when it was).
    """
    by_output = np.asarray(by_output, dtype=np.int64)
    n = int(by_output.sum())
    if n == 0:
        raise ValueError("no faces to inspect")
    fer = to_fer_index(labels)
    accuracy = by_output[fer, np.arange(len(labels))].sum() / n
    support = by_output.sum(axis=1)
    chance = support.max() / n
    commonest = EMOTIONS[int(support.argmax())]
    answers = by_output.sum(axis=0)
    top_answer = labels[int(answers.argmax())]
    top_share = answers.max() / n
    best_labels, best_correct = best_order(by_output)
    best_accuracy = best_correct / n
    findings = []
    if top_share * 100 > thresholds.max_one_class_pct:
        findings.append(Finding("one_class", (
            f"the float model answers {top_answer!r} for {top_share:.1%} of the faces (limit --max-one-class "
            f"{thresholds.max_one_class_pct:g}%): its input is likely normalized wrongly (pixels scaled twice, "
            "e.g. a Rescaling layer inside the model and --input-scale too, or the wrong --input-scale/--input-offset), "
            "or it is untrained")))
    if (accuracy - chance) * 100 < thresholds.min_above_chance_pts:
        findings.append(Finding("near_chance", (
            f"the float model is near chance: accuracy {accuracy:.1%}, while always answering {commonest!r} scores "
            f"{chance:.1%} (it must beat that by --min-above-chance {thresholds.min_above_chance_pts:g} points): "
            "wrong label order, wrong input normalization, or a model that did not learn")))
    # A better order counts only where it makes a model worth having: renaming the one answer of a model that
    # answers one class for every face would "gain" up to the commonest class's share, and explain nothing.
    credible = (best_accuracy - chance) * 100 >= thresholds.min_above_chance_pts
    order_checked = n >= MIN_ORDER_FACES
    order_note = None if order_checked else (
        f"label order not checked: {n} faces are fewer than {MIN_ORDER_FACES} (the best of 5040 orders would beat "
        "the right one by luck)")
    if order_checked and (best_accuracy - accuracy) * 100 > thresholds.max_order_gain_pts and credible:
        alphabetical = ""
        if describe(best_labels) == "alphabetical":
            alphabetical = " (the alphabetical folder order of Keras' directory loaders)"
        findings.append(Finding("label_order", (
            f"the labels look mis-ordered: --labels {describe(best_labels)}{alphabetical} scores {best_accuracy:.1%} "
            f"against {accuracy:.1%} with --labels {describe(labels)} (limit --max-order-gain "
            f"{thresholds.max_order_gain_pts:g} points): pass the order the model was trained with")))
    return {"accuracy": float(accuracy), "chance": float(chance), "commonest": commonest, "top_answer": top_answer,
            "top_share": float(top_share), "labels": list(labels), "best_labels": list(best_labels),
            "best_accuracy": float(best_accuracy), "order_checked": order_checked, "order_note": order_note,
            "findings": findings}


def as_json(inspection: dict) -> dict:
    """`inspect`'s result with findings as plain dicts (for report.json)."""
    return {**inspection, "findings": [{"kind": f.kind, "message": f.message} for f in inspection["findings"]]}


def inspect_predictions(y_true: np.ndarray, outputs: np.ndarray, labels: tuple[str, ...], thresholds: Thresholds) -> dict:
    """`inspect` for true FER2013 classes (N,) and the model's argmax output indices (N,)."""
    from quantize.metrics import confusion

    return inspect(confusion(np.asarray(y_true), np.asarray(outputs)), labels, thresholds)


def inspect_model(model, faces, norm, labels: tuple[str, ...], thresholds: Thresholds) -> dict:
    """`inspect` for a Keras model run on `faces` (a datasets.Faces, resized here to the model's input)."""
    from quantize.keras_io import input_size
    from quantize.runners import keras_scores

    faces = faces.resized(*input_size(model))
    outputs = keras_scores(model, faces.x, norm).argmax(axis=1)
    return inspect_predictions(faces.y, outputs, labels, thresholds)


def thresholds_from(args) -> Thresholds:
    """The thresholds given by the CLI flags (see cli._gate_flags)."""
    return Thresholds(args.min_above_chance, args.max_one_class, args.max_order_gain)

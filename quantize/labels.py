"""The FER2013 classes and the order a model's 7 outputs stand for them in.

Data always comes in FER2013 order (the CSV's `emotion` column 0-6; folders and npz files are read into
it). A model's outputs need not: Keras' directory loaders (`image_dataset_from_directory`,
`flow_from_directory`) number classes by sorted folder name, so a model trained on the image-folder
release of FER2013 answers in ALPHABETICAL order. `--labels` says which order a model uses; it is
used for scoring and written into the sidecar, which the daemon maps outputs by.
"""

from __future__ import annotations

from quantize.errors import QuantizeError

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
ALPHABETICAL: tuple[str, ...] = tuple(sorted(EMOTIONS))

# Shorthands accepted by --labels, each an order of the 7 names.
NAMED_ORDERS: dict[str, tuple[str, ...]] = {"fer2013": EMOTIONS, "alphabetical": ALPHABETICAL}

LABELS_HELP = ("the class each model output stands for, in output order: 7 comma-separated names "
               f"({','.join(EMOTIONS)} is FER2013's order), or 'fer2013', or 'alphabetical' "
               f"({','.join(ALPHABETICAL)}: Keras' image_dataset_from_directory/flow_from_directory on class folders)")


def parse_labels(text: str) -> tuple[str, ...]:
    """The 7 labels named by `text` (a shorthand or comma-separated names, any case).

    Raises QuantizeError naming --labels unless they are the 7 FER2013 emotions, each once.
    """
    key = text.strip().lower()
    if key in NAMED_ORDERS:
        return NAMED_ORDERS[key]
    names = tuple(name.strip().lower() for name in key.split(","))
    unknown = [name for name in names if name not in EMOTIONS]
    if unknown:
        raise QuantizeError(f"--labels: unknown emotion {unknown[0]!r}; use the names {', '.join(EMOTIONS)} "
                            f"or one of {', '.join(NAMED_ORDERS)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    missing = [name for name in EMOTIONS if name not in names]
    if repeated or missing or len(names) != len(EMOTIONS):
        raise QuantizeError(f"--labels must name each of the {len(EMOTIONS)} emotions once, got {len(names)} names"
                            + (f"; repeated: {', '.join(repeated)}" if repeated else "")
                            + (f"; missing: {', '.join(missing)}" if missing else ""))
    return names


def describe(labels: tuple[str, ...] | list[str]) -> str:
    """`labels` as a --labels value: the shorthand when there is one, else the comma-separated names."""
    for name, order in NAMED_ORDERS.items():
        if tuple(labels) == order:
            return name
    return ",".join(labels)


def to_fer_index(labels: tuple[str, ...] | list[str]):
    """An int array (7,) mapping model output i to the FER2013 index of labels[i]."""
    import numpy as np

    return np.array([EMOTIONS.index(name) for name in labels], dtype=np.int64)


def labels_for_check(flag: str | None, tflite) -> tuple[str, ...]:
    """The labels `check` scores with: --labels, else the sidecar's, else FER2013's order."""
    if flag:
        return parse_labels(flag)
    from quantize import sidecar
    from quantize.errors import ModelError

    try:
        recorded = sidecar.read(tflite)["labels"]
    except ModelError:
        return EMOTIONS  # no sidecar: check asks for the normalization flags anyway
    try:
        return parse_labels(",".join(recorded))
    except QuantizeError as exc:
        raise QuantizeError(f"{sidecar.path_for(tflite)}: labels {recorded}: {exc}") from None

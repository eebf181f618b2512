"""The JSON file beside every converted model: what a runtime needs to feed it and what it scored.

Format 1 (edged reads it):
{"format": 1, "model_id": str (see `model_id`), "labels": [7 names, one per output, in output order],
 "input": {"height", "width", "dtype": "int8", "scale", "zero_point", "pixels": "raw grayscale 0-255"},
 "output": {"dtype", "scale", "zero_point"},
 "normalization": {"input_scale", "input_offset", "in_model": str | null},
 "tta": "none" | "flip" (test-time augmentation inside the graph; optional, "none" when absent),
 "face_crop": {"scale", "shift_x", "shift_y"} (the square around a Haar box the daemon feeds the model, in box
 sides; optional),
 "source": {"file", "sha256"[, "keras2_config_rewritten": [what was changed]]},
 "calibration": {"data", "n"}, "accuracy": {...} | null, "accuracy_note": str (why accuracy is null; optional),
 "created": ISO 8601, "tool": str}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from quantize import __version__
from quantize.errors import ModelError
from quantize.labels import EMOTIONS
from quantize.runners import Int8Model

FORMAT = 1

# How FER2013 frames a face relative to the daemon's Haar box (bench/framing.py on the 2,421 PublicTest faces
# the cascade finds: median image side / box side 1.032, p10-p90 0.92-1.25; centre offsets under 0.01 box
# sides). The daemon crops this square around a detected face, so it sees faces framed as in training.
# accuracy_note of a model converted with --eval-split none: `check` then says its faces may have been learned.
NO_UNSEEN_SPLIT = "not measured (convert --eval-split none): the model trained on every labelled split"
FER2013_FACE_CROP = {"scale": 1.03, "shift_x": 0.0, "shift_y": 0.0}


def path_for(tflite: Path) -> Path:
    return tflite.with_suffix(".json")


def model_id(stem: str, source_sha256: str, labels, tta: str, norm) -> str:
    """`stem-xxxxxxxx`: a short hash of what decides the published emotions (the source file, the output labels,
    the TTA and the normalization folded in), so two different mappings of one file never share an id."""
    key = json.dumps({"sha256": source_sha256, "labels": list(labels), "tta": tta,
                      "input_scale": float(norm.scale), "input_offset": float(norm.offset)}, sort_keys=True)
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def build(int8: Int8Model, source: Path, source_sha256: str, norm, calibration: dict, accuracy: dict | None,
          labels: tuple[str, ...] = EMOTIONS, in_model: str | None = None, tta: str = "none",
          face_crop: dict | None = None, accuracy_note: str | None = None) -> dict:
    """The sidecar's content. labels: the emotion of each output, in output order (the daemon maps by it);
    in_model: the model's own input normalization layer, if any (then norm is scale 1, offset 0); tta: test-time
    augmentation inside the graph; face_crop: the daemon's crop around a Haar box (default: FER2013's framing);
    accuracy_note: why `accuracy` is None (e.g. NO_UNSEEN_SPLIT)."""
    from quantize.keras_io import keras2_rewrites

    source_info: dict = {"file": source.name, "sha256": source_sha256}
    rewritten = keras2_rewrites(source) if source.suffix.lower() in {".h5", ".hdf5", ".keras"} else None
    if rewritten:
        source_info["keras2_config_rewritten"] = rewritten[1]
    data = {
        "format": FORMAT,
        "model_id": model_id(int8.path.stem, source_sha256, labels, tta, norm),
        "labels": list(labels),
        "input": {"height": int8.height, "width": int8.width, "dtype": "int8", "scale": float(int8.in_scale),
                  "zero_point": int(int8.in_zero), "pixels": "raw grayscale 0-255"},
        "output": {"dtype": "int8", "scale": float(int8.out_scale), "zero_point": int(int8.out_zero)},
        "normalization": {"input_scale": norm.scale, "input_offset": norm.offset, "in_model": in_model},
        "tta": tta,
        "face_crop": face_crop or FER2013_FACE_CROP,
        "source": source_info,
        "calibration": calibration,
        "accuracy": accuracy,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "tool": f"quantize {__version__}",
    }
    if accuracy is None and accuracy_note:
        data["accuracy_note"] = accuracy_note
    return data


def read(tflite: Path) -> dict:
    """The sidecar, read by the daemon's own reader so both sides agree on what a valid one is."""
    from edged.classifier import read_sidecar
    from edged.errors import ModelError as DaemonModelError

    try:
        data = read_sidecar(tflite)
    except DaemonModelError as exc:
        raise ModelError(str(exc)) from None
    if data.get("format") != FORMAT:
        raise ModelError(f"{path_for(tflite)}: sidecar format {data.get('format')!r}, expected {FORMAT}")
    return data


def write(tflite: Path, data: dict) -> Path:
    path = path_for(tflite)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path

"""Emotion classification of face crops with the int8 TFLite model and the sidecar JSON written beside it.

The model takes raw 0-255 grayscale pixels quantized with its input parameters (normalization is inside
the graph), so the only work before `invoke` is crop (a view), resize (into a reused buffer) and one
integer shift. TensorFlow is never
imported: `tflite_runtime` first, then `ai_edge_litert`.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edged.errors import ModelError
from edged.faces import Box
from edged.models import default_model
from edged.native import captured_stderr, pass_on
from edged.paths import readable_file, why_unreadable
from edged.payloads import EMOTIONS

if TYPE_CHECKING:
    from edged.settings import ModelSettings

logger = logging.getLogger(__name__)

RUNTIMES = {"ai-edge-litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter"}


def interpreter_class(runtime: str = "auto") -> Any:
    """The TFLite `Interpreter` class of the chosen runtime; `auto` tries ai-edge-litert, then tflite-runtime.

    ai-edge-litert comes first because tflite-runtime 2.14 (its last release) runs int8 models without
    XNNPACK's int8 kernels: 4.8 ms against 0.3 ms per face for the shipped model on one x86 core.
    tflite-runtime stays the fallback where LiteRT has no wheel (32-bit ARM).
    """
    names = list(RUNTIMES) if runtime == "auto" else [runtime]
    for name in names:
        try:
            return importlib.import_module(RUNTIMES[name]).Interpreter
        except ImportError:
            continue
    wanted = " or ".join(names)
    raise ModelError(f"no TFLite runtime: pip install {wanted} (EDGED_MODEL__RUNTIME={runtime})")


def _resolver_without_delegates(interpreter: Any) -> Any:
    module = importlib.import_module(interpreter.__module__)
    return module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def sidecar_path(model: Path) -> Path:
    """`models/emotions-int8.tflite` -> `models/emotions-int8.json`."""
    return model.with_suffix(".json")


def read_sidecar(model: Path) -> dict:
    """The converter's record of the model: labels, input/output quantization, model id."""
    path = sidecar_path(model)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model sidecar {path} is missing (the converter writes it beside {model.name})") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"model sidecar {path} cannot be read: {exc}") from None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelError(f"model sidecar {path} has no list of labels")
    return meta


def face_crop(meta: dict, where: Path) -> tuple[float, float, float]:
    """(scale, shift_x, shift_y) of the sidecar's optional `face_crop`: how the training data framed a face
    relative to a Haar box (see bench/framing.py); (1, 0, 0), the box itself, when the sidecar has none."""
    crop = meta.get("face_crop") or {}
    try:
        scale, shift_x, shift_y = (float(crop.get(k, d)) for k, d in (("scale", 1.0), ("shift_x", 0.0), ("shift_y", 0.0)))
    except (TypeError, ValueError, AttributeError):
        raise ModelError(f"model sidecar {where}: face_crop must be {{'scale': s, 'shift_x': dx, 'shift_y': dy}} numbers, "
                         f"got {crop!r}") from None
    if not (0.5 <= scale <= 3 and abs(shift_x) <= 0.5 and abs(shift_y) <= 0.5):
        raise ModelError(f"model sidecar {where}: face_crop {crop!r} is out of range (scale 0.5-3, shifts within 0.5)")
    return scale, shift_x, shift_y


def _pre_shrink(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """The crop averaged down by the largest whole factor that keeps it at least height x width.

    OpenCV's INTER_AREA is ~20x faster for a whole factor than for a fractional one (0.01 against 0.2 ms for
    a 338-pixel face to 48 here); averaging by k first, then by the remaining fraction (< 2), gives nearly
    the same pixels, at the cost of trimming fewer than k pixels off the bottom and right edges.
    """
    k = min(crop.shape[0] // height, crop.shape[1] // width)
    if k < 2:
        return crop
    rows, cols = crop.shape[0] // k, crop.shape[1] // k
    return cv2.resize(crop[: rows * k, : cols * k], (cols, rows), interpolation=cv2.INTER_AREA)


class EmotionClassifier:
    """Class probabilities (label -> 0..1) for face boxes in a grayscale frame.

    threads: the interpreter's CPU threads; batch: most faces per `invoke` (the input tensor is resized
    only when the number of faces changes); xnnpack: use XNNPACK's int8 kernels (the runtimes' default).
    """

    def __init__(self, path: Path | None = None, threads: int = 1, batch: int = 8, runtime: str = "auto",
                 xnnpack: bool = True) -> None:
        if path is not None:
            self.path = readable_file(path, "EDGED_MODEL__PATH")
        else:
            self.path = default_model()
            reason = why_unreadable(self.path)
            if reason is not None:
                raise ModelError(f"the bundled model {self.path}: {reason}; reinstall edged, or set EDGED_MODEL__PATH")
        meta = read_sidecar(self.path)
        self.labels: tuple[str, ...] = tuple(meta["labels"])
        self.model_id: str = str(meta.get("model_id") or self.path.stem)
        self.batch = max(1, int(batch))
        native: list[str] = []
        try:
            interpreter = interpreter_class(runtime)
            # XNNPACK is the default delegate of both runtimes; turning it off means asking for the plain kernels.
            options = {} if xnnpack else {"experimental_op_resolver_type": _resolver_without_delegates(interpreter)}
            # The runtime announces its delegate on stderr ("INFO: Created TensorFlow Lite XNNPACK delegate"):
            # logged at DEBUG here; anything else it says is passed on.
            with captured_stderr() as native:
                self._interpreter = interpreter(model_path=str(self.path), num_threads=int(threads), **options)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"model {self.path} cannot be loaded: {exc}") from None
        finally:
            for line in native:
                logger.debug("runtime: %s", line)
            pass_on([line for line in native if not line.startswith("INFO: ")])
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        shape = tuple(int(d) for d in inp["shape"])
        if inp["dtype"] != np.int8 or len(shape) != 4 or shape[0] != 1 or shape[3] != 1:
            raise ModelError(f"model {self.path}: input is {np.dtype(inp['dtype']).name} {shape}, "
                             "expected int8 (1, H, W, 1) grayscale")
        if int(out["shape"][-1]) != len(self.labels):
            raise ModelError(f"model {self.path} has {int(out['shape'][-1])} outputs but its sidecar "
                             f"{sidecar_path(self.path)} lists {len(self.labels)} labels")
        # The sidecar says which emotion each output is (a model trained on class folders answers in
        # alphabetical order); scores are handed on in the contract's order whatever the model's.
        if sorted(self.labels) != sorted(EMOTIONS):
            raise ModelError(f"model sidecar {sidecar_path(self.path)} lists labels {list(self.labels)}; expected each "
                             f"of the contract's emotions once ({', '.join(EMOTIONS)}), in the model's output order")
        self._contract_order = None if self.labels == EMOTIONS else [self.labels.index(e) for e in EMOTIONS]
        self.input_size: tuple[int, int] = (shape[1], shape[2])  # (height, width) pixels
        self._check_sidecar_input(meta)
        self.face_crop: tuple[float, float, float] = face_crop(meta, sidecar_path(self.path))
        self._input_index = int(inp["index"])
        self._output_index = int(out["index"])
        self._in_scale, self._in_zero = (float(q) for q in inp["quantization"])
        self._out_scale, self._out_zero = (float(q) for q in out["quantization"])
        self._out_int8 = out["dtype"] == np.int8
        # raw pixels p -> p/s + z; for s=1, z=-128 that is p - 128, i.e. flipping the top bit of the uint8
        self._xor_fast_path = self._in_scale == 1.0 and self._in_zero == -128
        self._batch_now = 1
        # Reused for every frame: the resized crops (uint8) and the model's input (int8), `batch` faces deep.
        self._pixels = np.empty((self.batch, *self.input_size), dtype=np.uint8)
        self._input = np.empty((self.batch, *self.input_size), dtype=np.int8)
        logger.info("model %s (%s) loaded: input %dx%d, %d labels", self.path, self.model_id, *self.input_size,
                    len(self.labels))

    @classmethod
    def from_settings(cls, model: ModelSettings) -> EmotionClassifier:
        return cls(model.path, model.threads, model.batch, model.runtime, model.xnnpack)

    def _check_sidecar_input(self, meta: dict) -> None:
        declared = meta.get("input") or {}
        size = (declared.get("height"), declared.get("width"))
        if None not in size and tuple(size) != self.input_size:
            raise ModelError(f"model sidecar {sidecar_path(self.path)} describes a {size[0]}x{size[1]} input, "
                             f"but {self.path.name} takes {self.input_size[0]}x{self.input_size[1]}: mismatched files")

    def classify(self, gray: np.ndarray, boxes: Sequence[Box]) -> list[dict[str, float]]:
        """One {emotion: probability 0-1} per box, in the order of `boxes`; keys in the contract's order."""
        results: list[dict[str, float]] = []
        for start in range(0, len(boxes), self.batch):
            probabilities = self._classify_batch(gray, boxes[start:start + self.batch])
            if self._contract_order is not None:
                probabilities = probabilities[:, self._contract_order]
            results += [dict(zip(EMOTIONS, row, strict=True)) for row in probabilities.tolist()]
        return results

    def _classify_batch(self, gray: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """(len(boxes), labels) probabilities from one invoke; crops are resized straight into a reused buffer."""
        count = len(boxes)
        if count != self._batch_now:
            self._resize(count)
        if count != self._batch_now:  # the model refused a batch dimension: one face per invoke
            return np.concatenate([self._classify_batch(gray, boxes[i:i + 1]) for i in range(count)])
        height, width = self.input_size
        pixels = self._pixels[:count]
        for i, box in enumerate(boxes):
            cv2.resize(_pre_shrink(self._crop(gray, box), height, width), (width, height), dst=pixels[i],
                       interpolation=cv2.INTER_AREA)
        self._interpreter.set_tensor(self._input_index, self._quantize(pixels, self._input[:count])[..., np.newaxis])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output_index)
        if self._out_int8:
            return np.clip((raw.astype(np.float32) - self._out_zero) * self._out_scale, 0.0, 1.0)
        return raw.astype(np.float32)

    def _crop(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """The square the model was trained to see around a detected face (the sidecar's `face_crop`: side =
        scale x the longer box side, centre shifted by shift_x, shift_y box sides), clipped to the frame:
        a view, not a copy."""
        x, y, w, h = box
        scale, shift_x, shift_y = self.face_crop
        box_side = max(w, h, 1)
        side = max(1, round(box_side * scale))
        cx, cy = x + w / 2 + shift_x * box_side, y + h / 2 + shift_y * box_side
        frame_h, frame_w = gray.shape[:2]
        x0 = min(max(0, round(cx - side / 2)), frame_w - 1)
        y0 = min(max(0, round(cy - side / 2)), frame_h - 1)
        x1, y1 = min(frame_w, x0 + side), min(frame_h, y0 + side)
        return gray[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]

    def _quantize(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Raw uint8 pixels as the model's int8 input, written into `out` (same shape, int8) when given."""
        if self._xor_fast_path:
            target = None if out is None else out.view(np.uint8)
            return np.bitwise_xor(pixels, np.uint8(0x80), out=target).view(np.int8)
        values = np.clip(np.round(pixels.astype(np.float32) / self._in_scale + self._in_zero), -128, 127)
        if out is None:
            return values.astype(np.int8)
        np.copyto(out, values, casting="unsafe")
        return out

    def _resize(self, size: int) -> None:
        height, width = self.input_size
        try:
            self._interpreter.resize_tensor_input(self._input_index, [size, height, width, 1])
            self._interpreter.allocate_tensors()
            self._batch_now = size
        except (ValueError, RuntimeError) as exc:
            logger.warning("model %s cannot batch %d faces (%s); classifying one at a time", self.path, size, exc)
            self._interpreter.resize_tensor_input(self._input_index, [1, height, width, 1])
            self._interpreter.allocate_tensors()
            self._batch_now = 1
            self.batch = 1

"""Run the float Keras model and the int8 TFLite model on the same uint8 images, batched."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from quantize.errors import ModelError
from quantize.keras_io import Normalization


def keras_scores(model, images: np.ndarray, norm: Normalization, batch: int = 256) -> np.ndarray:
    """Class probabilities (N, 7) of the float model for uint8 images (N, H, W)."""
    x = norm.apply(images)[..., None]
    if model.input_shape[-1] == 3:
        x = np.repeat(x, 3, axis=-1)
    return np.asarray(model.predict(x, batch_size=batch, verbose=0))


def interpreter(path: Path, threads: int = 1):
    """The daemon's runtime choice (`auto`: ai-edge-litert first, which also matters here: tflite-runtime
    2.14 cannot read models, "vector::reserve", in a process that has imported TensorFlow)."""
    from edged.classifier import interpreter_class
    from edged.errors import ModelError as DaemonModelError

    try:
        return interpreter_class("auto")(model_path=str(path), num_threads=threads)
    except DaemonModelError as exc:
        raise ModelError(str(exc)) from None
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a valid .tflite model ({exc})") from None


class Int8Model:
    """An int8 TFLite classifier that takes raw pixels; quantization parameters read once."""

    def __init__(self, path: Path, threads: int = 1):
        self.path = path
        self.interpreter = interpreter(path, threads)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        if inp["dtype"] != np.int8 or out["dtype"] != np.int8 or len(inp["shape"]) != 4:
            raise ModelError(f"{path}: expected int8 (1, H, W, 1) input and int8 output, got {inp['dtype'].__name__} "
                             f"{tuple(inp['shape'])} -> {out['dtype'].__name__}")
        self.input_index, self.output_index = inp["index"], out["index"]
        self.in_scale, self.in_zero = inp["quantization"]
        self.out_scale, self.out_zero = out["quantization"]
        self.height, self.width = int(inp["shape"][1]), int(inp["shape"][2])
        self._batch = 1

    def quantize(self, images: np.ndarray) -> np.ndarray:
        q = np.round(images.astype(np.float32) / self.in_scale + self.in_zero)
        return np.clip(q, -128, 127).astype(np.int8)[..., None]

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self.input_index, [batch, self.height, self.width, 1])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def scores(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """Dequantized class probabilities (N, 7) for uint8 images (N, H, W)."""
        out = []
        for start in range(0, len(images), batch):
            chunk = self.quantize(images[start : start + batch])
            self._resize(len(chunk))
            self.interpreter.set_tensor(self.input_index, chunk)
            self.interpreter.invoke()
            q = self.interpreter.get_tensor(self.output_index).astype(np.float32)
            out.append((q - self.out_zero) * self.out_scale)
        return np.concatenate(out)

    def latency_ms(self, images: np.ndarray, repeats: int = 200) -> float:
        """Median wall time of one single-image invoke, in milliseconds."""
        self._resize(1)
        times = []
        for i in range(repeats):
            self.interpreter.set_tensor(self.input_index, self.quantize(images[i % len(images)][None]))
            started = time.perf_counter()
            self.interpreter.invoke()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e3


def keras_latency_ms(model, images: np.ndarray, norm: Normalization, repeats: int = 50) -> float:
    """Median wall time of the float model on one image, as a compiled graph (not eager), in ms."""
    from quantize.tfenv import tensorflow

    tf = tensorflow()
    x = norm.apply(images[:1])[..., None]
    if model.input_shape[-1] == 3:
        x = np.repeat(x, 3, axis=-1)
    graph = tf.function(lambda t: model(t, training=False))
    x = tf.constant(x)
    graph(x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        graph(x).numpy()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3

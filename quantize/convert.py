"""Full-integer post-training quantization with TensorFlow's TFLiteConverter.

Every TensorFlow-version quirk of conversion lives here. The result has int8 weights, int8
activations and int8 input and output tensors; its input is raw grayscale pixels 0-255, which
calibrate to scale 1 and zero point -128, so a runtime feeds `pixel - 128` with no float work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings

import numpy as np

from quantize.datasets import Faces
from quantize.errors import ModelError
from quantize.keras_io import Normalization, with_raw_pixel_input
from quantize.tfenv import tensorflow

logger = logging.getLogger(__name__)


def to_int8_tflite(model, calibration: Faces, norm: Normalization) -> bytes:
    """Convert a Keras model to an int8 .tflite flatbuffer, calibrated on `calibration` (already resized)."""
    tf = tensorflow()
    wrapped = with_raw_pixel_input(model, norm)
    height, width = calibration.size
    images = calibration.x.astype(np.float32)[..., None]
    if images.min() > 0 or images.max() < 255:
        # Pin the input range to the full 0-255 so the input tensor gets scale 1, zero point -128.
        ramp = np.linspace(0, 255, height * width, dtype=np.float32).reshape(1, height, width, 1)
        images = np.concatenate([images, ramp])

    def representative():
        for image in images:
            yield [image[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(wrapped)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with _captured_output() as log:
        try:
            return converter.convert()
        except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
            detail = log.read().strip().splitlines()[-5:]
            raise ModelError(f"int8 conversion failed: {type(exc).__name__}: {exc}\n" + "\n".join(detail)) from None


@contextlib.contextmanager
def _captured_output():
    """Hide what TensorFlow's C++ and Python code print while converting (at file-descriptor level);
    the captured text is readable inside the block, for error messages."""
    with tempfile.TemporaryFile("w+") as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield _Reader(sink)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class _Reader:
    def __init__(self, sink):
        self.sink = sink

    def read(self) -> str:
        self.sink.flush()
        self.sink.seek(0)
        return self.sink.read()

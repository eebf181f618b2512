"""Import TensorFlow quietly, with a clear message when the `quantize` extra is not installed."""

from __future__ import annotations

import os

from quantize.errors import QuantizeError


def tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise QuantizeError("TensorFlow is not installed: pip install 'edged[quantize]'") from None
    tf.get_logger().setLevel("ERROR")
    return tf

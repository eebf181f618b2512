"""Loading Keras models (.keras and legacy Keras 2 .h5) and folding input normalization into them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from quantize.errors import ModelError
from quantize.tfenv import tensorflow


@dataclass(frozen=True)
class Normalization:
    """The float model sees `pixel * scale + offset` for raw pixels 0-255."""

    scale: float = 1 / 255
    offset: float = 0.0

    def apply(self, pixels):
        return pixels.astype("float32") * self.scale + self.offset


def load_keras(path: Path):
    """A Keras model from a .keras or .h5 file, checked to map (H, W, 1|3) images to 7 class scores."""
    tensorflow()
    import keras

    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.suffix.lower() not in {".keras", ".h5", ".hdf5"}:
        raise ModelError(f"{path}: expected a .keras or legacy Keras 2 .h5/.hdf5 file")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, TypeError... for bad files
        raise ModelError(f"{path}: cannot load Keras model ({type(exc).__name__}: {exc})") from None
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] not in (1, 3) or None in shape[1:3]:
        raise ModelError(f"{path}: input must be one (batch, H, W, 1 or 3) image tensor, got {shape}")
    if model.output_shape[-1] != 7:
        raise ModelError(f"{path}: output must be 7 FER2013 class scores, got shape {model.output_shape}")
    return model


def input_size(model) -> tuple[int, int]:
    return int(model.input_shape[1]), int(model.input_shape[2])


def with_raw_pixel_input(model, norm: Normalization):
    """Wrap `model` so it takes raw grayscale pixels 0-255 as (batch, H, W, 1) float32."""
    from keras import layers, models

    height, width = input_size(model)
    pixels = layers.Input((height, width, 1), name="pixels")
    x = layers.Rescaling(norm.scale, norm.offset, name="normalize")(pixels)
    if model.input_shape[-1] == 3:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    return models.Model(pixels, model(x), name=f"{model.name}_raw_pixels")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


TTA_CHOICES = ("none", "flip")


def with_flip_tta(model):
    """Wrap `model` so one call averages its class scores for the image and its mirror image (B, H, W, C)
    -> (B, 7). Converted to TFLite this is one invoke with both views inside the graph."""
    from keras import layers, models, ops

    x = layers.Input(model.input_shape[1:], name="image")
    mirrored = layers.Lambda(lambda t: ops.flip(t, axis=2), name="mirror")(x)
    scores = layers.Average(name="tta_flip")([model(x), model(mirrored)])
    return models.Model(x, scores, name=f"{model.name}_tta_flip")

"""Loading Keras models (.keras and legacy Keras 2 .h5) and folding input normalization into them.

Before Keras sees a file its first bytes are read, so a file that is not a model (a Git LFS pointer, a
saved web page, anything else) is named for what it is. Keras 2.0-2.2 Sequential `.h5` files, which
Keras 3 misreads, are loaded from a copy whose stored config is rewritten (see `keras2_rewrites`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import json
import math
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from quantize.errors import ModelError, QuantizeError
from quantize.tfenv import tensorflow

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
TFLITE_IDENTIFIER = b"TFL3"  # a TFLite flatbuffer's file identifier, at bytes 4-8
# An HDF5 superblock may sit after a user block of 512, 1024, 2048... bytes.
HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class Normalization:
    """The float model sees `pixel * scale + offset` for raw pixels 0-255."""

    scale: float = 1 / 255
    offset: float = 0.0

    def apply(self, pixels):
        return pixels.astype("float32") * self.scale + self.offset


def sniff(path: Path) -> str:
    """"hdf5" or "zip" from the file's first bytes; ModelError (naming the file and what it is) otherwise."""
    with path.open("rb") as f:
        head = f.read(4096 + len(HDF5_SIGNATURE))
    if head.startswith(ZIP_SIGNATURE):
        _check_zip(path)
        return "zip"
    if any(head[i : i + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for i in HDF5_OFFSETS):
        return "hdf5"
    size = path.stat().st_size
    if head[4:8] == TFLITE_IDENTIFIER:
        return _raise(f"{path}: a TFLite flatbuffer (an already converted model), not a Keras model: convert takes the "
                      "float Keras model (.keras or .h5) it was made from")
    if head.startswith(LFS_POINTER):
        return _raise(f"{path}: a Git LFS pointer ({size} bytes), not the model itself: the repository was cloned "
                      "without git-lfs; run `git lfs install && git lfs pull` in it, or download the file from the "
                      "repository's web page")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")) or b"<html" in text[:1024]:
        return _raise(f"{path}: a web page (HTML), not the raw model file: it was saved from a browser or a "
                      "'blob' URL; download the raw file instead (on GitHub: 'Download raw file', or a "
                      "raw.githubusercontent.com / ?raw=true URL)")
    if size == 0:
        return _raise(f"{path}: an empty file, not a Keras model")
    return _raise(f"{path}: not a Keras model: neither an HDF5 file (legacy .h5) nor a zip archive (.keras); "
                  f"it starts with {head[:16]!r}")


def _check_zip(path: Path) -> None:
    """ModelError for a zip whose central directory is missing or damaged (a partial download), which Keras
    reports as "File not found"."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelError(f"{path}: a truncated or corrupt zip archive ({exc}; {path.stat().st_size:,} bytes): likely a "
                         "partial download; download the .keras file again") from None


def _check_hdf5_holds_a_model(path: Path) -> None:
    """ModelError for an HDF5 file with weights and no architecture (Keras' save_weights, or a checkpoint)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "model_config" in f.attrs:
                return
            weights_only = "layer_names" in f.attrs or "model_weights" in f or "layers" in f
    except OSError:
        return  # Keras will say what is wrong
    what = "weights only (saved with save_weights or a checkpoint callback)" if weights_only else "no Keras model"
    raise ModelError(f"{path}: an HDF5 file with {what}, no model architecture: save the whole model with "
                     "model.save('model.keras'), or build it in code, load these weights and save it")


def _raise(message: str) -> str:
    raise ModelError(message)


def load_keras(path: Path, custom_objects: Path | None = None):
    """A Keras model from a .keras or .h5 file, checked to map (H, W, 1|3) images to 7 class scores.

    custom_objects: a Python file defining the model's custom layers (imported: it runs the user's code).
    Raises ModelError naming the file (what it is when it is not a model), QuantizeError for a bad
    --custom-objects file.
    """
    if path.is_dir():
        savedmodel = " (a TensorFlow SavedModel)" if (path / "saved_model.pb").is_file() else ""
        raise ModelError(f"{path}: a folder{savedmodel}, not a model file: a SavedModel is not supported; load it in "
                         "TensorFlow and save it as .keras (model.save('model.keras'))")
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.suffix.lower() == ".tflite":
        sniff(path)  # names a flatbuffer for what it is
    if path.suffix.lower() not in {".keras", ".h5", ".hdf5"}:
        raise ModelError(f"{path}: expected a .keras or legacy Keras 2 .h5/.hdf5 file")
    kind = sniff(path)  # before TensorFlow is imported: a wrong file is named at once
    if kind == "hdf5":
        _check_hdf5_holds_a_model(path)
    if custom_objects and not custom_objects.is_file():
        raise QuantizeError(f"--custom-objects {custom_objects}: no such file")
    tensorflow()
    import keras

    objects = load_custom_objects(custom_objects) if custom_objects else None
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        source = path
        # Keras picks the format by file name: a copy gets the name the bytes call for, and a Keras 2
        # config is rewritten in the copy, never in the user's file.
        rewritten = keras2_rewrites(path) if kind == "hdf5" else None
        if kind == "hdf5" and (rewritten or path.suffix.lower() == ".keras"):
            source = Path(tmp) / "model.h5"
            shutil.copyfile(path, source)
            if rewritten:
                _write_config(source, rewritten[0])
        elif kind == "zip" and path.suffix.lower() != ".keras":
            source = Path(tmp) / "model.keras"
            shutil.copyfile(path, source)
        try:
            model = keras.models.load_model(source, compile=False, custom_objects=objects)
        except Exception as exc:  # Keras raises ValueError, OSError, TypeError... for bad files
            raise ModelError(_load_error(path, exc, custom_objects)) from None
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] not in (1, 3) or None in shape[1:3]:
        raise ModelError(f"{path}: input must be one (batch, H, W, 1 or 3) image tensor, got {shape}")
    if model.output_shape[-1] != 7:
        raise ModelError(f"{path}: output must be 7 FER2013 class scores, got shape {model.output_shape}")
    return model


_UNKNOWN_CLASS = re.compile(r"(?:Could not locate (?:class|function)|Unknown (?:layer|object|activation)):? '?([\w.>]+)")


def _load_error(path: Path, exc: Exception, custom_objects: Path | None) -> str:
    unknown = _UNKNOWN_CLASS.search(str(exc))
    if unknown:
        name = unknown.group(1)
        if custom_objects:
            return f"{path}: the model uses {name!r}, which --custom-objects {custom_objects} does not define"
        return (f"{path}: the model uses {name!r}, a custom class Keras does not know: give quantize the code that "
                "defines it with --custom-objects FILE.py (quantize imports that file, which runs its code)")
    detail = " ".join(str(exc).split())
    if len(detail) > 400:
        detail = detail[:400] + "..."
    return f"{path}: cannot load Keras model ({type(exc).__name__}: {detail})"


def load_custom_objects(path: Path) -> dict:
    """Import the user's Python file (this runs their code) and return what Keras may need from it.

    A module-level dict `custom_objects` is used as it is; otherwise every class and function the file
    defines, by name. Importing also runs `@keras.saving.register_keras_serializable` decorators.
    Raises QuantizeError naming --custom-objects when the file is missing, fails to import or defines nothing.
    """
    where = f"--custom-objects {path}"
    if not path.is_file():
        raise QuantizeError(f"{where}: no such file")
    if path.suffix != ".py":
        raise QuantizeError(f"{where}: expected a Python file (.py) defining the model's custom layers")
    name = f"quantize_custom_objects_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise QuantizeError(f"{where}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # so it can import its neighbours
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise QuantizeError(f"{where}: importing it failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(folder)
    objects = getattr(module, "custom_objects", None)
    if objects is None:
        objects = {key: obj for key, obj in vars(module).items()
                   if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == name}
    if not isinstance(objects, dict) or not objects:
        raise QuantizeError(f"{where}: defines no class or function (nor a dict named custom_objects)")
    return objects


def keras2_rewrites(path: Path) -> tuple[dict, list[str]] | None:
    """The stored config of a Keras 2.0-2.2 Sequential .h5 rewritten for Keras 3, and what was changed.

    None when the file needs nothing (or holds no model config). Keras 2.0-2.1 store a Sequential's layers
    as a bare list, and Keras 2.0-2.2 put the input shape on the first layer (`batch_input_shape`);
    Keras 3 reads the first as a dict ("pop expected at most 1 argument") and the second as the layer's
    own shape ("Kernel shape must have the same length as input"). The rewrite makes the list
    `{"name", "layers": [...]}` and `batch_input_shape` an explicit InputLayer; weights are untouched.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError:
        return None  # Keras will report it
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        config = json.loads(raw)
    except ValueError:
        return None
    changes: list[str] = []
    rewritten = _rewrite_model(copy.deepcopy(config), changes)
    return (rewritten, changes) if changes else None


def _rewrite_model(config: dict, changes: list[str]) -> dict:
    if not isinstance(config, dict):
        return config
    kind = config.get("class_name")
    inner = config.get("config")
    if kind == "Sequential":
        if isinstance(inner, list):
            inner = {"name": "sequential", "layers": inner}
            config["config"] = inner
            changes.append("the Sequential layer list (Keras 2.0-2.1) wrapped as {\"layers\": [...]}")
        layers = inner.get("layers") if isinstance(inner, dict) else None
        if isinstance(layers, list) and layers:
            first = layers[0]
            shape = first.get("config", {}).pop("batch_input_shape", None)
            if shape is not None and first.get("class_name") != "InputLayer":
                name = first["config"].get("name", "layer")
                dtype = first["config"].get("dtype", "float32")
                layers.insert(0, {"class_name": "InputLayer",
                                  "config": {"batch_shape": shape, "dtype": dtype if isinstance(dtype, str) else "float32",
                                             "sparse": False, "name": f"{name}_input"}})
                changes.append(f"batch_input_shape {shape} of the first layer {name!r} made an explicit InputLayer")
            elif shape is not None:
                first["config"]["batch_shape"] = shape
            for layer in layers[1:]:
                config_of = layer.get("config") if isinstance(layer, dict) else None
                if isinstance(config_of, dict) and config_of.pop("batch_input_shape", None) is not None:
                    changes.append(f"a stray batch_input_shape of layer {layer['config'].get('name')!r} dropped")
    if isinstance(inner, dict):  # nested models (a Sequential inside a functional model or a Sequential)
        for i, layer in enumerate(inner.get("layers") or []):
            if isinstance(layer, dict) and layer.get("class_name") in {"Sequential", "Model", "Functional"}:
                inner["layers"][i] = _rewrite_model(layer, changes)
    return config


def _write_config(path: Path, config: dict) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)


def input_size(model) -> tuple[int, int]:
    return int(model.input_shape[1]), int(model.input_shape[2])


# Layers that pass pixels through unchanged at inference (augmentation, noise, resizing), looked past
# when searching for the model's own normalization.
_PASS_THROUGH = {"InputLayer", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
                 "RandomBrightness", "RandomCrop", "GaussianNoise", "GaussianDropout", "Dropout", "Resizing", "Identity"}


def input_normalization(model) -> str | None:
    """A description of the model's own normalization of raw 0-255 pixels at its input, or None.

    Found: a `Rescaling` that maps 0-255 into a small range (|scale| * 255 <= 16, e.g. 1/255 or 1/127.5
    with offset -1), or a `Normalization` whose mean or standard deviation is of pixel size (> 2), as the
    first layer that changes values (augmentation layers and nested Sequentials are looked through).
    Such a model must be fed raw pixels: input scale 1, offset 0.
    """
    layer = _first_value_layer(model)
    if layer is None:
        return None
    import numpy as np

    kind = type(layer).__name__
    if kind == "Rescaling":
        scale = np.asarray(layer.scale, dtype=float)
        offset = np.asarray(layer.offset, dtype=float)
        if np.max(np.abs(scale)) * 255 <= 16:
            return f"a Rescaling layer {layer.name!r} (scale {_fmt(scale)}, offset {_fmt(offset)})"
    elif kind == "Normalization":
        mean = next((v for v in (getattr(layer, "mean", None), getattr(layer, "adapt_mean", None),
                                 getattr(layer, "input_mean", None)) if v is not None), None)
        var = next((v for v in (getattr(layer, "variance", None), getattr(layer, "adapt_variance", None),
                                getattr(layer, "input_variance", None)) if v is not None), None)
        if mean is not None and var is not None:
            mean = np.asarray(mean, dtype=float)
            std = np.sqrt(np.maximum(np.asarray(var, dtype=float), 0))
            if np.max(np.abs(mean)) > 2 or np.max(std) > 2:
                return f"a Normalization layer {layer.name!r} (mean {_fmt(mean)}, std {_fmt(std)})"
    return None


def _first_value_layer(model):
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if kind in _PASS_THROUGH:
            continue
        if hasattr(layer, "layers"):  # a nested model: its first value-changing layer, if any
            inner = _first_value_layer(layer)
            if inner is not None:
                return inner
            continue
        return layer
    return None


def _fmt(values) -> str:
    flat = [float(v) for v in values.ravel()] if hasattr(values, "ravel") else [float(values)]
    return ", ".join(f"{v:.4g}" for v in flat[:3]) + (" ..." if len(flat) > 3 else "")


def resolve_normalization(model, path: Path, scale: float | None, offset: float | None,
                          default: Normalization = Normalization()) -> tuple[Normalization, str | None]:
    """The normalization to fold in: the flags, else raw pixels when the model normalizes itself, else `default`.

    Returns it and the description of the model's own normalization layer (None when it has none).
    Raises ModelError naming the flags when they would normalize pixels a second time.
    """
    own = input_normalization(model)
    if own is None:
        return Normalization(default.scale if scale is None else scale, default.offset if offset is None else offset), None
    given = [f"{flag} {value:g}" for flag, value, neutral in (("--input-scale", scale, 1.0), ("--input-offset", offset, 0.0))
             if value is not None and not math.isclose(value, neutral, abs_tol=1e-12)]
    if given:
        raise ModelError(f"{path} normalizes its own input with {own}, so it takes raw pixels 0-255; "
                         f"{' '.join(given)} would normalize them a second time: leave out --input-scale and "
                         "--input-offset (or pass --input-scale 1 --input-offset 0)")
    return Normalization(1.0, 0.0), own


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

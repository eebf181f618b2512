"""Make an .h5 file look as Keras 2.0-2.2 wrote it, with h5py (no TensorFlow, no old Keras needed).

Keras 2 put the input shape on the first layer (`batch_input_shape`) instead of an InputLayer, wrote dtypes
as strings and objects without "module"/"registered_name", had Activation('relu') for ReLU, and Keras
2.0-2.1 stored a Sequential's layers as a bare list. Weights are left as they are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def _keras2_object(value):
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy":
            return value["config"]["name"]
        return {k: _keras2_object(v) for k, v in value.items() if k not in {"module", "registered_name", "build_config"}}
    if isinstance(value, list):
        return [_keras2_object(v) for v in value]
    return value


def as_keras2(source: Path, out: Path, version: str = "2.0.8") -> Path:
    """Copy `source` (a Keras 3 Sequential .h5) to `out`, its config rewritten as Keras `version` (2.0-2.2) stored it."""
    import h5py

    shutil.copyfile(source, out)
    with h5py.File(out, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = _keras2_object(config["config"]["layers"])
        first_input = layers.pop(0)
        assert first_input["class_name"] == "InputLayer"
        layers[0]["config"]["batch_input_shape"] = first_input["config"]["batch_shape"]
        for layer in layers:
            if layer["class_name"] == "ReLU":
                layer["class_name"] = "Activation"
                layer["config"] = {"name": layer["config"]["name"], "trainable": True, "activation": "relu"}
        minor = int(version.split(".")[1])
        stored = layers if minor < 2 else {"name": config["config"]["name"], "layers": layers}
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": stored})
        f.attrs["keras_version"] = version
        if "training_config" in f.attrs:
            del f.attrs["training_config"]
    return out

"""Write a synthetic FER-format CSV and three small Keras models into OUT (run in its own process:
TensorFlow must stay out of the pytest process, where tflite-runtime cannot coexist with it).

- small48.keras: 48x48 input, pixels/255, trained
- small64.h5:    64x64 input, pixels in [-1, 1], trained, saved in the legacy Keras 2 HDF5 format
- untrained.keras: same shape as small48, random weights (for a failing accuracy gate)
Each trained model's float predictions on the PublicTest split go to <name>.pred.npy.

The kinds of models people bring, each made from small48's weights (no more training), so each computes
the same function as small48 and must score the same once quantize reads it right:
- alphabetical48.keras: outputs in alphabetical class order (Keras' directory loaders)
- rescaling48.keras:    a Rescaling(1/255) layer inside, so it takes raw pixels
- normalization48.keras: a Normalization layer (mean 0, variance 255^2) inside, the same
- rgb48.keras:          a (48, 48, 3) input, the first kernel split over the three channels
- oneclass48.keras:     a huge bias on "fear": the same answer for every face
- custom48.keras:       its ReLUs are a custom layer, ScaledReLU, defined in my_layers.py (written here)
- small48.h5:           small48 in the HDF5 format (tests rewrite its config the way Keras 2 stored it)
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
from keras import layers
from synthetic import gratings, write_csv


def small(size: int):
    return keras.Sequential(
        [
            layers.Input((size, size, 1)),
            layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Conv2D(32, 3, strides=2, padding="same"),
            layers.ReLU(),
            layers.GlobalAveragePooling2D(),
            layers.Dense(7, activation="softmax"),
        ]
    )


def main(out: Path) -> None:
    keras.utils.set_random_seed(0)
    x_train, y_train = gratings(420, seed=10)
    x_public, y_public = gratings(210, seed=11)  # 210: enough for the label-order check (gate.MIN_ORDER_FACES)
    write_csv(out / "faces.csv", {"Training": (x_train, y_train), "PublicTest": (x_public, y_public)})
    np.save(out / "public_y.npy", y_public)
    for name, size, scale, offset in (("small48.keras", 48, 1 / 255, 0.0), ("small64.h5", 64, 2 / 255, -1.0)):
        import cv2

        def prep(x, size=size, scale=scale, offset=offset):
            x = np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR) for img in x])
            return (x.astype("float32") * scale + offset)[..., None]

        model = small(size)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(prep(x_train), y_train, epochs=25, batch_size=32, verbose=0)
        np.save(out / f"{name}.pred.npy", model.predict(prep(x_public), verbose=0).argmax(axis=1))
        model.save(out / name)
    small(48).save(out / "untrained.keras")
    derived(keras.models.load_model(out / "small48.keras"), out)


MY_LAYERS = '''import keras


class ScaledReLU(keras.layers.Layer):
    """ReLU times a constant factor: a layer Keras cannot rebuild without this code."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return keras.ops.relu(x) * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
'''


def derived(base, out: Path) -> None:
    from quantize.labels import ALPHABETICAL, EMOTIONS

    def rebuild(first_layers, replace=lambda layer: layer, input_shape=(48, 48, 1)):
        """A Sequential of `first_layers` then copies of base's layers (replace() may swap one), same weights."""
        model = keras.Sequential([layers.Input(input_shape), *first_layers,
                                  *[replace(layer.__class__.from_config(layer.get_config())) for layer in base.layers]])
        for new, old in zip(model.layers[len(first_layers):], base.layers, strict=True):
            new.set_weights(old.get_weights())
        return model

    kernel, bias = base.layers[-1].get_weights()
    order = [EMOTIONS.index(name) for name in ALPHABETICAL]  # output j of the new model is FER class order[j]
    alphabetical = rebuild([])
    alphabetical.layers[-1].set_weights([kernel[:, order], bias[order]])
    alphabetical.save(out / "alphabetical48.keras")

    rebuild([layers.Rescaling(1 / 255)]).save(out / "rescaling48.keras")
    rebuild([layers.Normalization(mean=0.0, variance=255.0**2)]).save(out / "normalization48.keras")  # (x - 0) / 255

    rgb = keras.Sequential([layers.Input((48, 48, 3)),
                            *[layer.__class__.from_config(layer.get_config()) for layer in base.layers]])
    first, *rest = base.layers[0].get_weights()
    rgb.layers[0].set_weights([np.repeat(first / 3, 3, axis=2), *rest])
    for new, old in zip(rgb.layers[1:], base.layers[1:], strict=True):
        new.set_weights(old.get_weights())
    rgb.save(out / "rgb48.keras")

    one_class = rebuild([])
    one_class.layers[-1].set_weights([kernel, bias + 100 * (np.arange(7) == EMOTIONS.index("fear"))])
    one_class.save(out / "oneclass48.keras")

    (out / "my_layers.py").write_text(MY_LAYERS)
    sys.path.insert(0, str(out))
    from my_layers import ScaledReLU

    rebuild([], lambda layer: ScaledReLU(1.0) if isinstance(layer, layers.ReLU) else layer).save(out / "custom48.keras")
    base.save(out / "small48.h5")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

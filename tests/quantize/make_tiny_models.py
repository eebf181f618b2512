"""Write a synthetic FER-format CSV and three small Keras models into OUT (run in its own process:
TensorFlow must stay out of the pytest process, where tflite-runtime cannot coexist with it).

- small48.keras: 48x48 input, pixels/255, trained
- small64.h5:    64x64 input, pixels in [-1, 1], trained, saved in the legacy Keras 2 HDF5 format
- untrained.keras: same shape as small48, random weights (for a failing accuracy gate)
Each trained model's float predictions on the PublicTest split go to <name>.pred.npy.
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
    x_public, y_public = gratings(140, seed=11)
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


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""The reference CNNs `quantize train` can build. Both take (H, W, 1) pixels scaled to [0, 1].

- `seed`: the 6-conv CNN of the reference paper (3.3M parameters at 48x48).
- `edge`: a compact residual depthwise-separable CNN for a Raspberry Pi (0.37M parameters,
  ~31M multiply-adds at 48x48), built from the operators XNNPACK runs fastest in int8.
"""

from __future__ import annotations

ARCHITECTURES = ("edge", "seed")


def build(name: str, height: int = 48, width: int = 48, classes: int = 7):
    match name:
        case "seed":
            return seed(height, width, classes)
        case "edge":
            return edge(height, width, classes)
    raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")


def seed(height: int, width: int, classes: int):
    from keras import layers, models

    inputs = layers.Input((height, width, 1), name="pixels")
    x = inputs
    # "valid" convolutions: 48 -> 44 -> 40 -> 20 -> 18 -> 16 -> 8 -> 6 -> 4 -> 2, so Flatten gives 2x2x256
    # and the model has the paper's 3.3M parameters.
    for filters, kernel in ((64, 5), (128, 3), (256, 3)):
        for _ in range(2):
            x = layers.Conv2D(filters, kernel, padding="valid", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    for _ in range(2):
        x = layers.Dense(1024, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(classes, activation="softmax", name="scores")(x)
    return models.Model(inputs, outputs, name="seed")


def edge(height: int, width: int, classes: int):
    from keras import layers, models

    def conv_bn(x, filters, kernel=3, strides=1):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x)

    def separable(x, filters, strides=1):
        # Depthwise 3x3 then pointwise 1x1, each with batch norm; ReLU6 keeps int8 ranges tight.
        y = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU(6.0)(y)
        y = layers.Conv2D(filters, 1, use_bias=False)(y)
        return layers.BatchNormalization()(y)

    def block(x, filters, strides):
        shortcut = x
        if strides != 1 or x.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
            shortcut = layers.BatchNormalization()(shortcut)
        y = layers.ReLU(6.0)(separable(x, filters, strides))
        y = separable(y, filters)
        return layers.ReLU(6.0)(layers.Add()([shortcut, y]))

    inputs = layers.Input((height, width, 1), name="pixels")
    x = conv_bn(inputs, 32, strides=1)  # 48x48: full-resolution edges matter for expressions
    x = conv_bn(x, 32, strides=2)  # 24x24
    x = block(x, 64, 1)
    x = block(x, 128, 2)  # 12x12
    x = block(x, 128, 1)
    x = block(x, 256, 2)  # 6x6
    x = block(x, 256, 1)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(classes, activation="softmax", name="scores")(x)
    return models.Model(inputs, outputs, name="edge")

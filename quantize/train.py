"""`quantize train`: fit a reference CNN on FER2013's Training split, validated on PublicTest."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from quantize import architectures
from quantize.datasets import Faces, load_split
from quantize.errors import ModelError
from quantize.labels import EMOTIONS
from quantize.tfenv import tensorflow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    architecture: str = "edge"
    size: int = 48
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 2e-3
    patience: int = 10
    label_smoothing: float = 0.1
    augment: bool = True
    seed: int = 0
    time_budget_s: float | None = None
    init: str | None = None  # a .keras file of the same architecture to start from (a second cosine cycle)
    ema: float | None = None  # momentum of an exponential moving average of the weights, e.g. 0.998


def train(data: Path, out: Path, options: TrainOptions, train_split: str = "Training", val_split: str = "PublicTest") -> dict:
    """Train, keep the best epoch by validation accuracy, save it to `out`; returns the history summary."""
    tf = tensorflow()
    import keras

    keras.utils.set_random_seed(options.seed)
    train_faces = load_split(data, train_split).resized(options.size, options.size)
    val_faces = load_split(data, val_split).resized(options.size, options.size)
    logger.info("training on %d faces, validating on %d", len(train_faces), len(val_faces))

    model = architectures.build(options.architecture, options.size, options.size, len(EMOTIONS))
    if options.init:
        _load_weights(model, Path(options.init))
    steps = int(np.ceil(len(train_faces) / options.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        options.learning_rate / 10, decay_steps=steps * options.epochs, warmup_target=options.learning_rate, warmup_steps=steps
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(
            schedule, weight_decay=1e-4, use_ema=options.ema is not None, ema_momentum=options.ema or 0.99
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing),
        metrics=["accuracy"],
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    # With EMA, the averaged weights are swapped in for validation and checkpoints (it must come first).
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if options.ema else []
    checkpoint = out.with_suffix(".best.keras")
    callbacks += [
        keras.callbacks.EarlyStopping("val_accuracy", patience=options.patience, mode="max"),
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor="val_accuracy", save_best_only=True, mode="max"),
    ]
    if options.time_budget_s:
        callbacks.append(_TimeBudget(options.time_budget_s))
    started = time.monotonic()
    history = model.fit(
        _dataset(tf, train_faces, options, training=True),
        validation_data=_dataset(tf, val_faces, options, training=False),
        epochs=options.epochs,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    # The best epoch's weights, as validated (EMA ones when EMA is on), from the checkpoint.
    model.load_weights(checkpoint)
    _save_without_optimizer(model, options, out)
    checkpoint.unlink()
    val_acc = history.history["val_accuracy"]
    best = int(np.argmax(val_acc))
    summary = {
        "model": str(out),
        "options": asdict(options),
        "parameters": int(model.count_params()),
        "epochs_run": len(val_acc),
        "best_epoch": best + 1,
        "val_accuracy": float(val_acc[best]),
        "train_seconds": round(time.monotonic() - started, 1),
        "history": {k: [round(float(v), 5) for v in vs] for k, vs in history.history.items()},
    }
    out.with_suffix(".history.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _load_weights(model, path: Path) -> None:
    from quantize.keras_io import load_keras

    source = load_keras(path)
    try:
        model.set_weights(source.get_weights())
    except ValueError as exc:
        raise ModelError(f"{path}: weights do not fit the {model.name} architecture ({exc})") from None
    logger.info("starting from the weights of %s", path)


def _save_without_optimizer(model, options: TrainOptions, out: Path) -> None:
    """Save weights in a fresh, uncompiled copy: the optimizer's moments would triple the file."""
    clean = architectures.build(options.architecture, options.size, options.size, len(EMOTIONS))
    clean.set_weights(model.get_weights())
    clean.save(out)


def _dataset(tf, faces: Faces, options: TrainOptions, training: bool):
    x = faces.x[..., None]
    y = np.eye(len(EMOTIONS), dtype=np.float32)[faces.y]
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(faces), seed=options.seed, reshuffle_each_iteration=True)
    ds = ds.batch(options.batch_size).map(lambda a, b: (tf.cast(a, tf.float32) / 255.0, b))
    if training and options.augment:
        augment = _augmenter(options.seed)
        ds = ds.map(lambda a, b: (augment(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _augmenter(seed: int):
    from keras import Sequential, layers

    return Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.04, fill_mode="reflect", seed=seed),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
            layers.RandomZoom((-0.15, 0.1), fill_mode="reflect", seed=seed),
            layers.RandomContrast(0.25, seed=seed),
        ],
        name="augment",
    )


class _TimeBudget:
    """Stops training before an epoch would end past the wall-clock budget."""

    def __new__(cls, budget_s: float):
        import keras

        class TimeBudget(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.started = time.monotonic()

            def on_epoch_end(self, epoch, logs=None):
                elapsed = time.monotonic() - self.started
                if elapsed / (epoch + 1) + elapsed > budget_s:
                    logger.warning("time budget of %.0f s reached after epoch %d", budget_s, epoch + 1)
                    self.model.stop_training = True

        return TimeBudget()

"""`quantize train` and `quantize distill`: fit a reference CNN on FER2013, resumably.

One run is a cosine learning-rate schedule (one warm-up epoch, then cosine decay over `epochs`),
optionally followed by `cycles` warm restarts of `cycle_epochs` each (snapshot ensembling); the EMA
weights at the end of every cycle are kept as a snapshot. After every epoch one checkpoint file (an
npz, overwritten atomically) holds everything needed to continue the run on another machine:

- `w/*`: the model's variables (raw, not EMA), BN statistics included;
- `o/*`: the optimizer's variables: step counter, AdamW moments and the EMA of the weights;
- `best/*`, `snap<k>/*`: the best epoch's EMA weights and the end-of-cycle snapshots;
- `soft_labels`: the teachers' probabilities in a distillation run (absent for plain training);
- `meta`: JSON with the options, the data path, the epochs done and the per-epoch history.

Data order and augmentation are functions of (seed, epoch, batch), not of iterator state, so a run
resumed with `--resume` follows the same schedule, step for step, as one that was never stopped.

The network trains on random `crop` x `crop` crops of the 48x48 faces; the saved model takes the
whole face (48x48) and crops its centre inside the graph, so the daemon frames faces as before.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from quantize import architectures
from quantize.datasets import Faces, load_split
from quantize.errors import DataError, ModelError, QuantizeError
from quantize.labels import EMOTIONS
from quantize.tfenv import tensorflow

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
RECALIBRATION_FACES = 8192  # training faces over which EMA weights get their batch-norm statistics


@dataclass(frozen=True)
class TrainOptions:
    architecture: str = "edge"
    size: int = 48  # faces are resized to size x size before cropping
    crop: int | None = 40  # random crop x crop training crops; None trains on the whole face
    epochs: int = 40  # length of the first cosine cycle (its first epoch is the warm-up)
    cycles: int = 0  # warm restarts after the first cycle, each ending in a snapshot
    cycle_epochs: int = 10
    cycle_learning_rate: float | None = None  # peak of the restarts (default: half of learning_rate)
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    ema: float | None = 0.999
    augment: bool = True
    rotation_deg: float = 10.0
    erasing: float = 0.5  # probability of random erasing per face
    seed: int = 0
    train_split: str = "Training"  # "Training+PublicTest" for a final fit on both
    val_split: str | None = "PublicTest"  # None: no validation (a final fit); the last epoch is kept
    init: str | None = None  # a .keras model of the same architecture to start from
    distill_alpha: float = 0.0  # share of the teachers' soft labels in the targets (distillation)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.cycles * self.cycle_epochs

    @property
    def input_crop(self) -> int:
        return self.crop or self.size

    def cycle_ends(self) -> list[int]:
        """The epochs (1-based) at which a cosine cycle ends and a snapshot is taken."""
        return [self.epochs + k * self.cycle_epochs for k in range(self.cycles + 1)]


@dataclass
class RunState:
    """What a checkpoint holds besides the arrays."""

    options: TrainOptions
    data: str
    out: str
    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None  # {"epoch": n, "val_accuracy": a}
    snapshots: list[dict] = field(default_factory=list)  # {"epoch": n, "val_accuracy": a, "path": p}
    seconds: float = 0.0


def new_run(data: Path, out: Path, options: TrainOptions) -> RunState:
    if options.crop is not None and not 8 <= options.crop <= options.size:
        raise QuantizeError(f"--crop must be between 8 and --size ({options.size}), got {options.crop}")
    if options.epochs < 2:
        raise QuantizeError(f"--epochs must be at least 2 (one warm-up epoch, then the cosine decay), got {options.epochs}")
    if options.cycles < 0 or (options.cycles and options.cycle_epochs < 1):
        raise QuantizeError("--cycles must be >= 0 and --cycle-epochs >= 1")
    if options.ema is not None and not 0 < options.ema < 1:
        raise QuantizeError(f"--ema must be between 0 and 1 (e.g. 0.999), got {options.ema}")
    return RunState(options, str(data), str(out))


def train(state: RunState, checkpoint: Path, time_budget_s: float | None = None, soft_labels: np.ndarray | None = None,
          resume: bool = False, stop_after: int | None = None) -> RunState:
    """Run (or continue) `state` until its schedule ends, `stop_after` epochs have run in this call, or the
    next epoch would end past `time_budget_s` seconds of this call.

    `soft_labels` (N, 7) float are the teachers' probabilities for the training faces (distillation);
    they are stored in the checkpoint, so a resumed run needs no teacher. Writes the checkpoint after
    every epoch, `<out>.history.json`, snapshots as `<out stem>.snapshot<k>.keras` (written again on
    resume where missing, e.g. on a new machine), and `out` (the best epoch, or the last without
    validation) when the schedule ends. Returns the updated state.
    """
    tf = tensorflow()
    import keras

    options = state.options
    train_faces = _load(Path(state.data), options.train_split).resized(options.size, options.size)
    val_faces = None
    if options.val_split:
        val_faces = _load(Path(state.data), options.val_split).resized(options.size, options.size)
    arrays = _read_arrays(checkpoint) if resume else {}
    soft = arrays["soft_labels"].astype(np.float32) if soft_labels is None and "soft_labels" in arrays else soft_labels
    targets = _targets(train_faces, options, soft)
    logger.info("training on %d faces%s", len(train_faces), f", validating on {len(val_faces)}" if val_faces else "")

    keras.utils.set_random_seed(options.seed)
    model = architectures.build(options.architecture, options.input_crop, options.input_crop, len(EMOTIONS))
    steps = math.ceil(len(train_faces) / options.batch_size)
    optimizer = keras.optimizers.AdamW(
        CyclicCosine(options, steps), weight_decay=options.weight_decay,
        use_ema=options.ema is not None, ema_momentum=options.ema or 0.99,
    )
    model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    optimizer.build(model.trainable_variables)
    if resume:
        _restore(model, optimizer, arrays, checkpoint)
    elif options.init:
        _load_init(model, Path(options.init))
    best_weights = [arrays[k] for k in _keys(arrays, "best")] if resume else None
    snapshots = {s["epoch"]: [arrays[k] for k in _keys(arrays, f"snap{i}")] for i, s in enumerate(state.snapshots)} \
        if resume else {}

    out = Path(state.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    for snapshot in state.snapshots:
        if not Path(snapshot["path"]).exists():
            _save_model(snapshots[snapshot["epoch"]], options, Path(snapshot["path"]))
    started = time.monotonic()
    progress = _Progress(state, steps)
    try:
        while state.epochs_done < options.total_epochs:
            epoch = state.epochs_done
            if stop_after is not None and progress.done_here >= stop_after:
                break
            epoch_started = time.monotonic()
            if time_budget_s is not None and state.history:
                per_epoch = np.median([h["seconds"] for h in state.history[-5:]])
                if time.monotonic() - started + per_epoch > time_budget_s:
                    logger.warning("time budget reached after epoch %d; resume with --resume %s", epoch, checkpoint)
                    break
            fit = model.fit(_epoch_dataset(tf, train_faces, targets, options, epoch), epochs=epoch + 1,
                            initial_epoch=epoch, verbose=0, shuffle=False,
                            callbacks=[progress.callback()])
            record = {"epoch": epoch + 1, "loss": round(float(fit.history["loss"][-1]), 5),
                      "accuracy": round(float(fit.history["accuracy"][-1]), 5),
                      "learning_rate": float(optimizer.learning_rate.numpy()),  # of the next step
                      "step": int(optimizer.iterations.numpy())}
            ema = _ema_weights(model, optimizer)
            if options.ema is not None:
                ema = _recalibrated(model, ema, train_faces, options)
            if val_faces is not None:
                record["val_accuracy"] = round(_accuracy(model, ema, val_faces, options), 5)
                if state.best is None or record["val_accuracy"] > state.best["val_accuracy"]:
                    state.best = {"epoch": epoch + 1, "val_accuracy": record["val_accuracy"]}
                    best_weights = ema
            else:
                state.best = {"epoch": epoch + 1, "val_accuracy": None}
                best_weights = ema
            if epoch + 1 in options.cycle_ends():
                path = out.with_name(f"{out.stem}.snapshot{len(state.snapshots) + 1}{out.suffix}")
                _save_model(ema, options, path)
                snapshots[epoch + 1] = ema
                state.snapshots.append({"epoch": epoch + 1, "val_accuracy": record.get("val_accuracy"), "path": str(path)})
            record["seconds"] = round(time.monotonic() - epoch_started, 1)
            state.history.append(record)
            state.epochs_done = epoch + 1
            state.seconds += record["seconds"]
            _write_checkpoint(checkpoint, state, model, optimizer, best_weights, snapshots, soft)
            _write_history(out, state)
            progress.epoch_done(record)
    finally:
        progress.close()
    if state.epochs_done >= options.total_epochs:
        _save_model(best_weights, options, out)
        _write_history(out, state)
    return state


def resume_state(checkpoint: Path, data: Path | None = None) -> RunState:
    """The run state stored in `checkpoint`; `data` replaces the recorded data path (a new machine)."""
    meta = json.loads(str(_read_arrays(checkpoint, only_meta=True)["meta"]))
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{checkpoint}: checkpoint format {meta.get('format')!r}, this quantize reads {CHECKPOINT_FORMAT}")
    known = {f.name for f in fields(TrainOptions)}
    options = TrainOptions(**{k: v for k, v in meta["options"].items() if k in known})
    state = RunState(options, meta["data"], meta["out"], meta["epochs_done"], meta["history"], meta["best"],
                     meta["snapshots"], meta["seconds"])
    if data is not None:
        state.data = str(data)
    return state


def export(checkpoint: Path, out: Path, snapshot: int | None = None) -> dict:
    """Write the best epoch so far (or snapshot `snapshot`, 1-based) of the run in `checkpoint`, finished or
    not, as a deployable .keras model at `out`: the teacher for `distill`, or a look at a run still going.
    Returns `{"epoch": n, "val_accuracy": a}` (a: fraction, None without validation).

    Raises ModelError when the checkpoint holds no such weights (no epoch done yet, or fewer snapshots).
    """
    state = resume_state(checkpoint)
    arrays = _read_arrays(checkpoint)
    if snapshot is None:
        prefix, info = "best", state.best
        if not info:
            raise ModelError(f"{checkpoint}: no epoch has finished yet, so there is no best epoch to export")
    else:
        if not 1 <= snapshot <= len(state.snapshots):
            ends = state.options.cycle_ends()
            when = f"snapshot {snapshot} comes at epoch {ends[snapshot - 1]}" if snapshot <= len(ends) else \
                f"the schedule has {len(ends)} snapshot(s) in all"
            raise ModelError(f"{checkpoint}: --snapshot {snapshot}, but the run has {len(state.snapshots)} snapshot(s) "
                             f"so far (epochs done {state.epochs_done}/{state.options.total_epochs}; {when})")
        prefix, info = f"snap{snapshot - 1}", state.snapshots[snapshot - 1]
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_model([arrays[k] for k in _keys(arrays, prefix)], state.options, out)
    return {"epoch": info["epoch"], "val_accuracy": info.get("val_accuracy")}


def soft_labels(teachers: list[Path], faces: Faces, tta: str = "none", batch_size: int = 256) -> np.ndarray:
    """The teachers' averaged class probabilities (N, 7) for `faces`, each teacher at its own input size;
    with `tta="flip"` each teacher also sees the mirrored face. Teachers take pixels/255."""
    from quantize.keras_io import input_size, load_keras

    total = np.zeros((len(faces), len(EMOTIONS)), np.float64)
    views = 0
    for path in teachers:
        model = load_keras(path)
        x = faces.resized(*input_size(model)).x.astype(np.float32)[..., None] / 255.0
        for image in (x, x[:, :, ::-1]) if tta == "flip" else (x,):
            total += model.predict(image, batch_size=batch_size, verbose=0)
            views += 1
    return (total / views).astype(np.float32)


def _load(data: Path, splits: str) -> Faces:
    """One split, or several joined by '+' (e.g. Training+PublicTest for a final fit)."""
    parts = [load_split(data, name) for name in splits.split("+")]
    if len(parts) == 1:
        return parts[0]
    if len({p.size for p in parts}) != 1:
        raise DataError(f"{data}: splits {splits} have different image sizes {[p.size for p in parts]}")
    return Faces(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), f"{data}:{splits}")


def _targets(faces: Faces, options: TrainOptions, soft: np.ndarray | None) -> np.ndarray:
    """Training targets (N, 7): smoothed one-hot labels, mixed with soft labels when distilling."""
    k = len(EMOTIONS)
    hard = np.eye(k, dtype=np.float32)[faces.y] * (1 - options.label_smoothing) + options.label_smoothing / k
    if soft is None:
        if options.distill_alpha:
            raise QuantizeError("a distillation run needs the teachers' soft labels (quantize distill --teacher ...)")
        return hard
    if soft.shape != hard.shape:
        raise DataError(f"soft labels have shape {soft.shape}, the training split needs {hard.shape}")
    return (options.distill_alpha * soft + (1 - options.distill_alpha) * hard).astype(np.float32)


def _epoch_dataset(tf, faces: Faces, targets: np.ndarray, options: TrainOptions, epoch: int):
    """Batches of epoch `epoch`: order and augmentation depend only on (seed, epoch, batch index)."""
    order = np.random.default_rng([options.seed, epoch]).permutation(len(faces))
    ds = tf.data.Dataset.from_tensor_slices((faces.x[order][..., None], targets[order])).batch(options.batch_size)
    ds = ds.enumerate()
    crop = options.input_crop

    def prepare(index, batch):
        x, y = batch
        x = tf.cast(x, tf.float32) / 255.0
        seed = tf.stack([tf.constant(options.seed, tf.int64) * 1_000_003 + epoch, index])
        if options.augment:
            x = augment(tf, x, seed, crop, options.rotation_deg, options.erasing)
        elif crop != options.size:
            x = center_crop(tf, x, crop)
        return x, y

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def augment(tf, x, seed, crop: int, rotation_deg: float, erasing: float):
    """A batch (B, S, S, 1) in [0, 1] -> (B, crop, crop, 1): a random crop, horizontal flip, rotation and
    scale (one projective transform per face, reflected at the borders), contrast, and random erasing."""
    batch, size = tf.shape(x)[0], x.shape[1]

    def uniform(i, shape=None, low=0.0, high=1.0):
        salt = tf.constant([0, i * 7919 + 1], tf.int64)
        return tf.random.stateless_uniform(shape if shape is not None else [batch], seed=seed + salt, minval=low, maxval=high)

    angle = uniform(1, low=-rotation_deg, high=rotation_deg) * (math.pi / 180)
    scale = uniform(2, low=0.92, high=1.08)  # input pixels per output pixel
    flip = tf.where(uniform(3) < 0.5, -1.0, 1.0)
    slack = (size - crop) / 2
    shift_x, shift_y = uniform(4, low=-slack, high=slack), uniform(5, low=-slack, high=slack)
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    # Output pixel (u, v), centred, maps to input (a0 u + a1 v + a2, b0 u + b1 v + b2).
    c_out, c_in = (crop - 1) / 2, (size - 1) / 2
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    a2 = c_in + shift_x - a0 * c_out - a1 * c_out
    b2 = c_in + shift_y - b0 * c_out - b1 * c_out
    zeros = tf.zeros_like(a0)
    transform = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    x = tf.raw_ops.ImageProjectiveTransformV3(images=x, transforms=transform, output_shape=[crop, crop],
                                              fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    contrast = uniform(6, low=0.75, high=1.25)[:, None, None, None]
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = tf.clip_by_value((x - mean) * contrast + mean, 0.0, 1.0)
    if erasing > 0:
        area = uniform(7, low=0.02, high=0.25) * crop * crop
        aspect = tf.exp(uniform(8, low=math.log(0.3), high=math.log(3.3)))
        h = tf.minimum(tf.sqrt(area * aspect), crop - 1.0)
        w = tf.minimum(tf.sqrt(area / aspect), crop - 1.0)
        top, left = uniform(9) * (crop - h), uniform(10) * (crop - w)
        grid = tf.range(crop, dtype=tf.float32)
        rows = (grid[None, :] >= top[:, None]) & (grid[None, :] < (top + h)[:, None])
        cols = (grid[None, :] >= left[:, None]) & (grid[None, :] < (left + w)[:, None])
        box = (rows[:, :, None] & cols[:, None, :]) & (uniform(11) < erasing)[:, None, None]
        noise = uniform(12, shape=tf.stack([batch, crop, crop]))
        x = tf.where(box[..., None], noise[..., None], x)
    return x


def center_crop(tf, x, crop: int):
    margin = (x.shape[1] - crop) // 2
    return x[:, margin:margin + crop, margin:margin + crop, :]


def _accuracy(model, weights: list[np.ndarray], faces: Faces, options: TrainOptions) -> float:
    """Top-1 accuracy with `weights` (e.g. the EMA ones) on the centre crop; the model's own weights are restored."""
    tf = tensorflow()
    own = model.get_weights()
    model.set_weights(weights)
    try:
        x = center_crop(tf, faces.x[..., None].astype(np.float32) / 255.0, options.input_crop)
        predicted = model.predict(x, batch_size=512, verbose=0).argmax(axis=1)
    finally:
        model.set_weights(own)
    return float(np.mean(predicted == faces.y))


def _ema_weights(model, optimizer) -> list[np.ndarray]:
    """All of the model's weights (in `model.weights` order), the trainable ones replaced by their EMA."""
    averaged = {}
    if optimizer.use_ema:
        averaged = {id(v): e.numpy() for v, e in
                    zip(model.trainable_variables, optimizer._model_variables_moving_average, strict=True)}
    return [averaged.get(id(v), v.numpy()) for v in model.weights]


def _recalibrated(model, weights: list[np.ndarray], faces: Faces, options: TrainOptions,
                  limit: int = RECALIBRATION_FACES, batch_size: int = 512) -> list[np.ndarray]:
    """`weights` (all of them, `model.weights` order) with every batch norm's moving mean and variance
    recomputed for them: the exact average of the batch statistics over `limit` training faces (a fixed
    sample, centre crops, as the model sees faces at inference).

    An EMA of the weights comes with the moving statistics of the live weights, which lag and do not match
    it; recomputing them gave the warm-started run's epoch-24 snapshot +0.75 points on PublicTest (63.50% ->
    64.25%). The model's own weights and batch-norm momenta are restored."""
    from keras import layers

    norms = [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNormalization)]
    if not norms:
        return weights
    own, momenta = model.get_weights(), [layer.momentum for layer in norms]
    # In random order: batches of a split stored by class would each see one class, and the average of their
    # variances would miss the variance between classes.
    sample = np.random.default_rng(options.seed).permutation(len(faces))[:limit]
    x = center_crop(tensorflow(), faces.x[sample][..., None].astype(np.float32) / 255.0, options.input_crop)
    model.set_weights(weights)
    try:
        for layer in norms:
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
        for k, start in enumerate(range(0, len(x), batch_size)):
            for layer in norms:
                layer.momentum = k / (k + 1)  # moving = running mean of the batch statistics so far
            model(x[start:start + batch_size], training=True)
        return model.get_weights()
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
        model.set_weights(own)


def recalibrate(model_path: Path, data: Path, out: Path, split: str = "Training",
                limit: int = RECALIBRATION_FACES) -> tuple[int, int]:
    """Recompute the batch-norm statistics of a model `quantize train` saved (whole faces in, pixels/255,
    the centre crop inside the graph) on `limit` faces of `split`, and save it to `out`. For models saved
    before `train` did this itself. Returns (batch-norm layers recomputed, faces used).

    Raises ModelError for a file that is not a Keras model, DataError for unusable data."""
    from keras import layers

    from quantize.keras_io import input_size, load_keras

    model = load_keras(model_path)
    net = next((layer for layer in model.layers if hasattr(layer, "layers")), model)
    size, crop = input_size(model)[0], input_size(net)[0]
    faces = _load(data, split).resized(size, size)
    options = TrainOptions(size=size, crop=crop if crop != size else None)
    net.set_weights(_recalibrated(net, net.get_weights(), faces, options, limit))
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return sum(isinstance(layer, layers.BatchNormalization) for layer in net._flatten_layers()), min(limit, len(faces))


def deployable(options: TrainOptions, weights: list[np.ndarray] | None = None):
    """The model as shipped: whole size x size faces in, the centre crop inside the graph, class scores out."""
    from keras import layers, models

    net = architectures.build(options.architecture, options.input_crop, options.input_crop, len(EMOTIONS))
    if weights is not None:
        net.set_weights(weights)
    if options.input_crop == options.size:
        return net
    pixels = layers.Input((options.size, options.size, 1), name="pixels")
    margin = (options.size - options.input_crop) // 2
    x = layers.Cropping2D(margin, name="center_crop")(pixels)
    return models.Model(pixels, net(x), name=f"{net.name}_crop{options.input_crop}")


def _save_model(weights, options: TrainOptions, path: Path) -> None:
    """Save `weights` (all of them, `model.weights` order) in a fresh, uncompiled deployable model."""
    deployable(options, weights).save(path)


def _write_checkpoint(path: Path, state: RunState, model, optimizer, best, snapshots, soft) -> None:
    meta = {"format": CHECKPOINT_FORMAT, "options": asdict(state.options), "data": state.data, "out": state.out,
            "epochs_done": state.epochs_done, "history": state.history, "best": state.best,
            "snapshots": state.snapshots, "seconds": round(state.seconds, 1)}
    arrays = {"meta": np.array(json.dumps(meta))}
    arrays |= {f"w/{i:04d}": v.numpy() for i, v in enumerate(model.variables)}
    arrays |= {f"o/{i:04d}": v.numpy() for i, v in enumerate(optimizer.variables)}
    arrays |= {f"best/{i:04d}": w for i, w in enumerate(best or [])}
    for k, epoch in enumerate(sorted(snapshots)):
        arrays |= {f"snap{k}/{i:04d}": w for i, w in enumerate(snapshots[epoch])}
    if soft is not None:
        arrays["soft_labels"] = soft.astype(np.float16)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_arrays(path: Path, only_meta: bool = False) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file" if not path.exists() else f"{path}: not a file")
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise ValueError("a single array, not an .npz archive")
        with archive:
            if "meta" not in archive.files:
                raise ValueError("no run metadata in it (a checkpoint is the .npz that train/distill --checkpoint write)")
            return {k: archive[k] for k in archive.files if not only_meta or k == "meta"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: not a quantize checkpoint ({type(exc).__name__}: {exc})") from None


def _keys(arrays: dict, prefix: str) -> list[str]:
    return sorted(k for k in arrays if k.startswith(prefix + "/"))


def _restore(model, optimizer, arrays: dict, path: Path) -> None:
    for prefix, variables in (("w", model.variables), ("o", optimizer.variables)):
        keys = _keys(arrays, prefix)
        if len(keys) != len(variables):
            raise ModelError(f"{path}: {len(keys)} stored {prefix!r} arrays for {len(variables)} variables; "
                             "was it written by another architecture or quantize version?")
        for variable, key in zip(variables, keys, strict=True):
            if tuple(variable.shape) != arrays[key].shape:
                raise ModelError(f"{path}: {key} has shape {arrays[key].shape}, the model needs {tuple(variable.shape)}")
            variable.assign(arrays[key])


def _load_init(model, path: Path) -> None:
    from quantize.keras_io import load_keras

    source = load_keras(path)
    inner = next((layer for layer in source.layers if hasattr(layer, "layers")), source)
    try:
        model.set_weights(inner.get_weights())
    except ValueError as exc:
        raise ModelError(f"{path}: weights do not fit the {model.name} architecture ({exc})") from None
    logger.info("starting from the weights of %s", path)


def _write_history(out: Path, state: RunState) -> None:
    summary = {"model": state.out, "data": state.data, "options": asdict(state.options),
               "epochs_done": state.epochs_done, "epochs_planned": state.options.total_epochs,
               "best": state.best, "snapshots": state.snapshots, "train_seconds": round(state.seconds, 1),
               "history": state.history}
    out.with_name(f"{out.stem}.history.json").write_text(json.dumps(summary, indent=2) + "\n")


class CyclicCosine:
    """Learning rate per optimizer step: a one-epoch linear warm-up to `learning_rate`, cosine decay to 1% of
    it at the end of `epochs`, then `cycles` restarts at `cycle_learning_rate`, each decaying over
    `cycle_epochs`. A pure function of the step, so a resumed optimizer continues it exactly."""

    def __new__(cls, options: TrainOptions, steps_per_epoch: int):
        import keras
        from keras import ops

        peak = options.learning_rate
        restart_peak = options.cycle_learning_rate or peak / 2
        warmup, first = steps_per_epoch, options.epochs * steps_per_epoch
        cycle = max(1, options.cycle_epochs * steps_per_epoch)

        class Schedule(keras.optimizers.schedules.LearningRateSchedule):
            def __call__(self, step):
                step = ops.cast(step, "float32")
                warm = peak / 10 + (peak - peak / 10) * step / warmup
                t_first = ops.clip((step - warmup) / (first - warmup), 0.0, 1.0)
                in_first = peak * (0.01 + 0.99 * 0.5 * (1 + ops.cos(math.pi * t_first)))
                t_cycle = ops.clip(((step - first) % cycle) / cycle, 0.0, 1.0)
                in_cycle = restart_peak * (0.01 + 0.99 * 0.5 * (1 + ops.cos(math.pi * t_cycle)))
                return ops.where(step < warmup, warm, ops.where(step < first, in_first, in_cycle))

            def get_config(self):
                return {"options": asdict(options), "steps_per_epoch": steps_per_epoch}

        return Schedule()


class _Progress:
    """A progress bar over the whole run (ETA included) on a terminal; one line per epoch otherwise."""

    def __init__(self, state: RunState, steps: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.state, self.steps = state, steps
        self.console = Console(stderr=True)
        total = state.options.total_epochs
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
                            disable=not self.console.is_terminal)
        self.task = self.bar.add_task(self._describe(), total=total * steps, completed=state.epochs_done * steps)
        self.bar.start()
        self.started = time.monotonic()
        self.done_here = 0

    def _describe(self) -> str:
        s = self.state
        last = s.history[-1].get("val_accuracy") if s.history else None
        best = f", best {s.best['val_accuracy']:.2%}" if s.best and s.best.get("val_accuracy") is not None else ""
        val = f", val {last:.2%}" if last is not None else ""
        return f"epoch {s.epochs_done + 1}/{s.options.total_epochs}{val}{best}"

    def callback(self):
        import keras

        bar, task = self.bar, self.task

        class Step(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                bar.advance(task)

        return Step()

    def epoch_done(self, record: dict) -> None:
        self.done_here += 1
        self.bar.update(self.task, completed=self.state.epochs_done * self.steps, description=self._describe())
        if not self.console.is_terminal:
            left = self.state.options.total_epochs - self.state.epochs_done
            eta = (time.monotonic() - self.started) / self.done_here * left
            val = f" val_accuracy {record['val_accuracy']:.4f}" if "val_accuracy" in record else ""
            print(f"epoch {record['epoch']}/{self.state.options.total_epochs}: loss {record['loss']:.4f} "
                  f"accuracy {record['accuracy']:.4f}{val} lr {record['learning_rate']:.2e} "
                  f"{record['seconds']:.0f} s, ETA {eta / 60:.0f} min", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.stop()


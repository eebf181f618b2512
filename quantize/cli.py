"""The `quantize` command line: train, distill, recalibrate, export, convert, check.

Exit 0 ok, 1 accuracy gate failed, 2 bad input."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from quantize import __version__
from quantize.errors import QuantizeError
from quantize.labels import LABELS_HELP
from quantize.options import finite_float, non_negative_float, nonzero_float, percent, positive_int

EXIT_OK, EXIT_GATE, EXIT_INPUT = 0, 1, 2

DATA_HELP = "labelled faces: a FER2013 .csv (emotion,pixels,Usage), a .npz (x_train/y_train...) or a folder <split>/<class>/*.png"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except QuantizeError as exc:
        print(f"quantize: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantize",
        description="Train FER2013 emotion CNNs, convert them to full-int8 TFLite and gate the accuracy drop.",
        epilog="Example: quantize convert my.keras --data fer2013.csv --out emotions.tflite && "
        "quantize check --keras my.keras --tflite emotions.tflite --data fer2013.csv --max-drop 0.5",
    )
    parser.add_argument("--version", action="version", version=f"quantize {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a reference CNN on Training, validated on PublicTest (resumable)",
                       description="Train a reference CNN: random crops, flips, rotation, random erasing, label "
                       "smoothing, AdamW with a cosine schedule (plus optional warm restarts that each end in a "
                       "snapshot), an EMA of the weights. A checkpoint after every epoch lets --resume continue the "
                       "same schedule on any machine. The best epoch by validation accuracy is saved to OUT; the "
                       "model takes whole faces (pixels/255) and crops their centre inside the graph.",
                       epilog="Example: quantize train --data fer2013.csv --out runs/edge/edge.keras --epochs 200 "
                       "--cycles 3 --cycle-epochs 20 --checkpoint runs/edge/checkpoint.npz; after an interruption: "
                       "quantize train --resume runs/edge/checkpoint.npz")
    _training_flags(p)
    p.set_defaults(run=_train)

    p = sub.add_parser("distill", help="train a student from the soft labels of teacher models",
                       description="Knowledge distillation: the teachers' class probabilities for every training face "
                       "(averaged over the teachers, and over the mirrored face with --tta flip) are computed once, "
                       "stored in the checkpoint, and mixed with the smoothed true labels as the student's targets. "
                       "Otherwise a `train` run: same flags, same checkpoints, same --resume.",
                       epilog="Example: quantize distill --teacher runs/a.snapshot1.keras --teacher runs/a.snapshot2.keras "
                       "--tta flip --data fer2013.csv --out runs/student.keras --epochs 100")
    p.add_argument("--teacher", action="append", type=Path, default=[], metavar="MODEL",
                   help="a teacher .keras/.h5 model taking pixels/255 (repeat for an ensemble)")
    p.add_argument("--tta", choices=("none", "flip"), default="flip",
                   help="average each teacher over the face and its mirror image (default flip)")
    p.add_argument("--alpha", type=float, default=0.7,
                   help="weight of the soft labels against the smoothed true labels (default 0.7)")
    _training_flags(p)
    p.set_defaults(run=_distill)

    p = sub.add_parser("recalibrate", help="recompute a trained model's batch-norm statistics on training faces",
                       description="For a model saved by `quantize train` (whole faces in, pixels/255): every batch "
                       "norm's moving mean and variance is replaced by the exact average of its batch statistics over "
                       "training faces (centre crops). `train` does this for the EMA weights it saves; this command "
                       "does it for models saved before it did.",
                       epilog="Example: quantize recalibrate runs/edge/edge.snapshot1.keras --data fer2013.csv "
                       "--out runs/edge/edge.recalibrated.keras")
    p.add_argument("model", type=Path, metavar="MODEL", help="a .keras model saved by quantize train")
    p.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    p.add_argument("--out", required=True, type=Path, help="the .keras model to write")
    p.add_argument("--split", default="Training", help="split to take the faces from (default Training)")
    p.add_argument("--faces", type=positive_int, default=8192, help="how many faces (default 8192)")
    p.set_defaults(run=_recalibrate)

    p = sub.add_parser("export", help="write a run's best epoch so far (or a snapshot) as a .keras model",
                       description="Take a model out of a training checkpoint, finished or not: the best epoch by "
                       "validation accuracy so far (EMA weights, batch-norm statistics recomputed, as `train` saves "
                       "them), or snapshot K. The run itself is not touched; --resume continues it.",
                       epilog="Example: quantize export runs/edge-v2.checkpoint.npz --out teacher.keras && "
                       "quantize distill --teacher teacher.keras ...")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="a checkpoint written by quantize train/distill")
    p.add_argument("--out", required=True, type=Path, help="the .keras model to write")
    p.add_argument("--snapshot", type=positive_int, metavar="K", help="snapshot K (1-based) instead of the best epoch")
    p.set_defaults(run=_export)

    p = sub.add_parser("convert", help="convert a Keras model to a full-int8 .tflite that takes raw pixels",
                       description="Full-integer post-training quantization: int8 weights, activations, input and "
                       "output. The input normalization is folded into the graph, so the .tflite takes raw grayscale "
                       "pixels 0-255 (as int8, pixel - 128). Writes OUT and its sidecar: OUT with .json in place of its suffix "
                       "(fer.tflite -> fer.json).",
                       epilog="Example, a model trained on pixels in [-1, 1]: quantize convert emotion_model.hdf5 "
                       "--data fer2013.csv --out fer.tflite --input-scale 0.00784 --input-offset -1")
    p.add_argument("model", type=Path, metavar="MODEL", help="Keras model: .keras, or legacy Keras 2 .h5/.hdf5")
    p.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    p.add_argument("--out", required=True, type=Path,
                   help="the .tflite file to write (the sidecar is OUT with .json in place of .tflite: fer.tflite -> fer.json)")
    _normalization_flags(p, "default 1/255; 1 when the model has its own Rescaling or Normalization layer at its input")
    p.add_argument("--labels", help=LABELS_HELP + " (default fer2013; written into the sidecar)")
    _model_code_flag(p)
    _gate_flags(p, "warn")
    p.add_argument("--calibration-split", default="Training", help="split to draw calibration faces from (default Training)")
    p.add_argument("--calibration-size", type=positive_int, default=300, help="stratified calibration faces (default 300)")
    p.add_argument("--eval-split", default="PublicTest",
                   help="split whose float and int8 accuracy go into the sidecar (default PublicTest; skipped if absent; "
                   "'none' after a final fit that trained on every labelled split, so no unseen faces are left)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample (default 0)")
    p.add_argument("--tta", choices=("none", "flip"), default="none",
                   help="flip: the model averages the face and its mirror image in one invoke (about twice the "
                   "time per face; recorded in the sidecar, and `check` evaluates the float model the same way)")
    p.set_defaults(run=_convert)

    p = sub.add_parser("check", help="compare float and int8 accuracy; exit 1 when the drop is too large",
                       description="Evaluate the Keras model and the int8 model on the same faces: top-1 accuracy, "
                       "drop in points, agreement, per-class precision/recall/F1, macro-F1, confusion matrices, sizes "
                       "and latency; and the float model itself (near chance, one answer for almost every face, a label "
                       "order that scores far better). Exit 0 if the drop is within --max-drop and the float model "
                       "passes, 1 if not, 2 on bad input.",
                       epilog="Example: quantize check --keras my.keras --tflite my.tflite --data fer2013.csv "
                       "--max-drop 0.5 --report reports/")
    p.add_argument("--keras", required=True, type=Path, help="the float Keras model (.keras or .h5)")
    p.add_argument("--tflite", required=True, type=Path, help="the int8 model made by quantize convert")
    p.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    p.add_argument("--split", default="PublicTest", help="split to evaluate on (default PublicTest)")
    p.add_argument("--max-drop", type=non_negative_float, default=1.0, metavar="PTS",
                   help="largest accepted accuracy drop in percentage points (default 1.0)")
    p.add_argument("--report", type=Path, metavar="DIR", help="write report.json, report.md and confusion PNGs here")
    p.add_argument("--no-latency", dest="latency", action="store_false", help="skip the latency measurement")
    _normalization_flags(p, "default: what the sidecar records")
    p.add_argument("--labels", help=LABELS_HELP + " (default: what the sidecar records, else fer2013)")
    _model_code_flag(p)
    _gate_flags(p, "fail")
    p.set_defaults(run=_check)
    return parser


def _normalization_flags(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument("--input-scale", type=nonzero_float, metavar="S",
                   help=f"the float model sees pixel * S + O ({where})")
    p.add_argument("--input-offset", type=finite_float, metavar="O",
                   help="see --input-scale (0 for [0, 1] inputs, -1 with S=0.00784 for [-1, 1])")


def _model_code_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--custom-objects", type=Path, metavar="FILE.py",
                   help="a Python file defining the model's custom layers; quantize imports it, which runs that code")


def _gate_flags(p: argparse.ArgumentParser, action: str) -> None:
    """Thresholds of the checks on the float model itself (quantize.gate); `action`: what crossing one does."""
    p.add_argument("--min-above-chance", type=non_negative_float, default=10.0, metavar="PTS",
                   help=f"{action} when float accuracy is less than this many points above always answering the "
                   "commonest class (default 10)")
    p.add_argument("--max-one-class", type=percent, default=90.0, metavar="PCT",
                   help=f"{action} when the float model gives one answer for more than this %% of faces (default 90)")
    p.add_argument("--max-order-gain", type=non_negative_float, default=5.0, metavar="PTS",
                   help=f"{action} when another label order scores this many points more than --labels (default 5)")


def _training_flags(p: argparse.ArgumentParser) -> None:
    from quantize.train import TrainOptions

    d = TrainOptions()
    p.add_argument("--data", type=Path, help=DATA_HELP + " (with --resume: only to give a new path)")
    p.add_argument("--out", type=Path, help="where to write the .keras model (and OUT.history.json, snapshots beside it)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE",
                   help="the checkpoint written after every epoch (default: OUT with .checkpoint.npz)")
    p.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                   help="continue the run stored in this checkpoint (its options are used; other flags are ignored "
                   "except --data, --time-budget)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop (checkpointed) before an epoch would end past this many minutes of this invocation")
    p.add_argument("--stop-after", type=int, default=None, metavar="EPOCHS",
                   help="stop (checkpointed) after this many epochs of this invocation; --resume continues")
    p.add_argument("--arch", default=d.architecture, choices=("edge", "seed"),
                   help="edge: compact separable CNN for a Pi (default); seed: the paper's 6-conv 3.3M model")
    p.add_argument("--size", type=int, default=d.size, help=f"faces are resized to this height and width (default {d.size})")
    p.add_argument("--crop", type=int, default=d.crop,
                   help=f"train on random CROPxCROP crops; the model crops the centre (default {d.crop}; 0: no crop)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"length of the first cosine cycle (default {d.epochs})")
    p.add_argument("--cycles", type=int, default=d.cycles, help="warm restarts after it, each ending in a snapshot (default 0)")
    p.add_argument("--cycle-epochs", type=int, default=d.cycle_epochs, help=f"epochs per restart (default {d.cycle_epochs})")
    p.add_argument("--cycle-learning-rate", type=float, default=None, help="peak of the restarts (default: half the peak)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate,
                   help=f"peak learning rate of the cosine schedule (default {d.learning_rate:g})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay (default {d.weight_decay:g})")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help=f"default {d.label_smoothing:g}")
    p.add_argument("--ema", type=float, default=d.ema, metavar="MOMENTUM",
                   help=f"validate and keep an exponential moving average of the weights (default {d.ema}; 0: off)")
    p.add_argument("--rotation", type=float, default=d.rotation_deg, metavar="DEG",
                   help=f"largest random rotation in degrees (default {d.rotation_deg:g})")
    p.add_argument("--erasing", type=float, default=d.erasing, metavar="P",
                   help=f"probability of random erasing per face (default {d.erasing:g})")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no augmentation at all (centre crops)")
    p.add_argument("--train-split", default=d.train_split, help="split to fit; join with + (Training+PublicTest) for a final fit")
    p.add_argument("--val-split", default=d.val_split,
                   help="split to validate on (default PublicTest; 'none': keep the last epoch)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    p.add_argument("--init", type=Path, metavar="MODEL",
                   help="start from this model's weights (same --arch and --crop): e.g. a final fit from the best model")


def _options(args, **extra):
    from quantize.train import TrainOptions

    return TrainOptions(
        architecture=args.arch, size=args.size, crop=args.crop or None, epochs=args.epochs, cycles=args.cycles,
        cycle_epochs=args.cycle_epochs, cycle_learning_rate=args.cycle_learning_rate, batch_size=args.batch_size,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        ema=args.ema or None, augment=args.augment, rotation_deg=args.rotation, erasing=args.erasing, seed=args.seed,
        train_split=args.train_split, val_split=None if args.val_split.lower() == "none" else args.val_split,
        init=str(args.init) if args.init else None, **extra,
    )


def _run_training(args, options_extra: dict | None = None, soft=None) -> int:
    from quantize import train

    budget = args.time_budget * 60 if args.time_budget else None
    if args.resume:
        state = train.resume_state(args.resume, args.data)
        checkpoint = args.resume
        print(f"resuming {checkpoint}: epoch {state.epochs_done}/{state.options.total_epochs} done", file=sys.stderr)
        for h in state.history[-3:]:  # where the run stands, also on a machine without its history file
            print(f"  epoch {h['epoch']}: accuracy {h['accuracy']:.4f}, val_accuracy {h.get('val_accuracy', float('nan')):.4f}, "
                  f"learning rate {h['learning_rate']:.2e}", file=sys.stderr)
        soft = None  # stored in the checkpoint
    else:
        if args.data is None or args.out is None:
            raise QuantizeError("--data and --out are required (or --resume CHECKPOINT)")
        state = train.new_run(args.data, args.out, _options(args, **(options_extra or {})))
        checkpoint = args.checkpoint or args.out.with_suffix(".checkpoint.npz")
        if checkpoint.exists():
            raise QuantizeError(f"{checkpoint} exists: continue it with --resume {checkpoint}, or choose --checkpoint")
        soft = soft(state) if soft else None
    state = train.train(state, checkpoint, budget, soft_labels=soft, resume=bool(args.resume), stop_after=args.stop_after)
    best = state.best or {}
    acc = f"best {state.options.val_split} accuracy {best['val_accuracy']:.2%} at epoch {best['epoch']}" \
        if best.get("val_accuracy") is not None else "no validation"
    done = state.epochs_done >= state.options.total_epochs
    where = state.out if done else f"not finished: quantize train --resume {checkpoint}"
    print(f"{where}: {state.epochs_done}/{state.options.total_epochs} epochs, {acc}, {state.seconds / 60:.1f} min in all")
    return EXIT_OK


def _train(args) -> int:
    return _run_training(args)


def _distill(args) -> int:
    if not args.resume and not args.teacher:
        raise QuantizeError("distill needs at least one --teacher MODEL")
    if not 0 < args.alpha <= 1:
        raise QuantizeError(f"--alpha must be in (0, 1], got {args.alpha}")

    def soft(state):
        from quantize import train

        faces = train._load(args.data, state.options.train_split).resized(state.options.size, state.options.size)
        print(f"soft labels from {len(args.teacher)} teacher(s) on {len(faces)} faces (tta {args.tta})...", file=sys.stderr)
        return train.soft_labels(args.teacher, faces, args.tta)

    return _run_training(args, {"distill_alpha": args.alpha}, soft)


def _recalibrate(args) -> int:
    from quantize.train import recalibrate

    layers, faces = recalibrate(args.model, args.data, args.out, args.split, args.faces)
    print(f"{args.out}: batch-norm statistics of {layers} layers recomputed on {faces} {args.split} faces")
    return EXIT_OK


def _export(args) -> int:
    from quantize.options import writable_file
    from quantize.train import export

    if args.out.suffix != ".keras":
        raise QuantizeError(f"--out {args.out}: export writes a Keras model, so the name must end in .keras")
    writable_file(args.out, "--out")
    info = export(args.checkpoint, args.out, args.snapshot)
    acc = f"validation accuracy {info['val_accuracy']:.2%}" if info["val_accuracy"] is not None else "no validation"
    what = f"snapshot {args.snapshot}" if args.snapshot else "best epoch"
    print(f"{args.out}: {what} of {args.checkpoint}, epoch {info['epoch']}, {acc}")
    return EXIT_OK


def _convert(args) -> int:
    from rich.console import Console

    from quantize import gate, sidecar
    from quantize.compare import compare
    from quantize.convert import to_int8_tflite
    from quantize.datasets import load_split
    from quantize.errors import DataError
    from quantize.keras_io import input_size, load_keras, resolve_normalization, sha256, with_flip_tta
    from quantize.labels import EMOTIONS, parse_labels
    from quantize.options import writable_file
    from quantize.runners import Int8Model

    console = Console(stderr=True)
    labels = parse_labels(args.labels) if args.labels else EMOTIONS
    writable_file(args.out, "--out")
    if args.eval_split.lower() == args.calibration_split.lower():
        print(f"quantize: warning: --eval-split {args.eval_split} is also the calibration split (and the split models "
              "are usually trained on): the accuracy in the sidecar will not be a held-out figure", file=sys.stderr)
    model = load_keras(args.model, args.custom_objects)
    norm, in_model = resolve_normalization(model, args.model, args.input_scale, args.input_offset)
    if in_model:
        console.print(f"{args.model} normalizes its own input ({in_model}): it is fed raw pixels (scale 1, offset 0)")
    if args.tta == "flip":
        model = with_flip_tta(model)  # after the normalization check, which reads the model's own layers
    height, width = input_size(model)
    faces = load_split(args.data, args.calibration_split)
    calibration = faces.stratified_sample(args.calibration_size, args.seed).resized(height, width)
    if len(calibration) < args.calibration_size:
        print(f"quantize: warning: --calibration-size {args.calibration_size}, but the {args.calibration_split} split "
              f"has only {len(faces)} faces: calibrating on all {len(faces)}", file=sys.stderr)
    for finding in gate.inspect_model(model, calibration, norm, labels, gate.thresholds_from(args))["findings"]:
        print(f"quantize: warning: on the {len(calibration)} calibration faces, {finding.message}", file=sys.stderr)
    with console.status(f"calibrating and converting on {len(calibration)} faces ({height}x{width})..."):
        flatbuffer = to_int8_tflite(model, calibration, norm)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(flatbuffer)
    int8 = Int8Model(args.out)
    accuracy = evaluation = note = None
    if args.eval_split.lower() == "none":
        note = sidecar.NO_UNSEEN_SPLIT
        console.print("no accuracy in the sidecar (--eval-split none)")
    else:
        try:
            evaluation = load_split(args.data, args.eval_split)
        except DataError as exc:
            note = f"not measured: {exc}"
            console.print(f"no accuracy in the sidecar: {exc}")
    if evaluation is not None:
        with console.status(f"evaluating float and int8 on {len(evaluation)} {args.eval_split} faces..."):
            result = compare(model, args.model, int8, evaluation, norm, latency=False, labels=labels)
        accuracy = {"split": args.eval_split, "n": result["n"], "float": result["float"]["accuracy"],
                    "int8": result["int8"]["accuracy"], "drop_pts": result["drop_pts"], "agreement": result["agreement"]}
    calib = {"data": calibration.source, "n": len(calibration), "seed": args.seed}
    meta = sidecar.build(int8, args.model, sha256(args.model), norm, calib, accuracy, labels, in_model, args.tta,
                         accuracy_note=note)
    sidecar.write(args.out, meta)
    line = f"{args.out}: {args.out.stat().st_size / 1024:,.0f} KB, input {height}x{width} int8 " \
           f"(scale {meta['input']['scale']:g}, zero point {meta['input']['zero_point']})"
    if accuracy:
        line += f"; {args.eval_split} accuracy float {accuracy['float']:.2%}, int8 {accuracy['int8']:.2%}, " \
                f"drop {accuracy['drop_pts']:+.2f} pts, agreement {accuracy['agreement']:.2%}"
    print(line)
    return EXIT_OK


def _check(args) -> int:
    import numpy as np

    from quantize import gate, report, sidecar
    from quantize.compare import compare, mirror_symmetry
    from quantize.datasets import load_split
    from quantize.errors import ModelError
    from quantize.keras_io import Normalization, load_keras, resolve_normalization, sha256, with_flip_tta
    from quantize.labels import labels_for_check
    from quantize.options import writable_dir
    from quantize.runners import Int8Model

    if args.report:
        writable_dir(args.report, "--report")
    labels = labels_for_check(args.labels, args.tflite)
    model = load_keras(args.keras, args.custom_objects)
    if args.input_scale is not None or args.input_offset is not None:
        resolve_normalization(model, args.keras, args.input_scale, args.input_offset)  # refuses double normalization
    int8 = Int8Model(args.tflite)
    scale, offset = args.input_scale, args.input_offset
    try:
        meta = sidecar.read(args.tflite)
    except ModelError as exc:
        if scale is None or offset is None:
            raise QuantizeError(f"{exc}; pass --input-scale and --input-offset instead (and --labels when the model's "
                                "outputs are not in FER2013's order)") from None
        meta = {}
    mismatch = None
    if meta:
        if meta["source"]["sha256"] != sha256(args.keras):
            mismatch = (f"{args.tflite} was converted from a different file than {args.keras} "
                        f"(sha256 {meta['source']['sha256'][:12]}...)")
            print(f"quantize: warning: {mismatch}", file=sys.stderr)
        recorded = meta["normalization"]
        norm_source = "sidecar" if scale is None and offset is None else "flags" if None not in (scale, offset) \
            else "flags and sidecar"
        scale = recorded["input_scale"] if scale is None else scale
        offset = recorded["input_offset"] if offset is None else offset
    else:
        norm_source = "flags"
    seen = meta.get("accuracy") is None and meta.get("accuracy_note") == sidecar.NO_UNSEEN_SPLIT
    if seen:
        print(f"quantize: warning: {sidecar.path_for(args.tflite)} says {sidecar.NO_UNSEEN_SPLIT}: the accuracy below "
              f"may be on faces it learned (the float -> int8 drop still measures the conversion)", file=sys.stderr)
    faces = load_split(args.data, args.split)
    tta = _tta_for_check(meta, mirror_symmetry(int8, faces), args.tflite, sidecar.path_for(args.tflite))
    if tta["applied"] == "flip":
        model = with_flip_tta(model)  # compare like with like: the int8 graph averages both views
    if len(faces) < 500:
        worth = 100 / len(faces)
        share = f", {worth / args.max_drop:.0%} of --max-drop {args.max_drop:g}" if args.max_drop else ""
        print(f"quantize: warning: only {len(faces)} faces in the {args.split} split (under 500): one face is worth "
              f"{worth:.2f} points{share}", file=sys.stderr)
    result = compare(model, args.keras, int8, faces, Normalization(scale, offset), latency=args.latency, labels=labels)
    result["normalization"]["source"] = norm_source
    result["tta"] = tta
    if mismatch:
        result["source_mismatch"] = mismatch
    if seen:
        result["sidecar_accuracy_note"] = meta["accuracy_note"]
    inspection = gate.inspect(np.array(result["float"]["by_output"]), labels, gate.thresholds_from(args))
    result["float_checks"] = gate.as_json(inspection)
    result["max_drop_pts"] = args.max_drop
    result["passed"] = result["drop_pts"] <= args.max_drop and not inspection["findings"]
    report.print_table(result, args.max_drop)
    for finding in inspection["findings"]:
        print(f"quantize: check failed: {finding.message}", file=sys.stderr)
    if mismatch and not result["passed"]:
        print(f"quantize: check failed; a likely cause: {mismatch}: check the int8 model against the Keras file it "
              "was converted from", file=sys.stderr)
    if args.report:
        report.write(result, args.report)
    return EXIT_OK if result["passed"] else EXIT_GATE


def _tta_for_check(meta: dict, symmetry: dict, tflite: Path, sidecar_path: Path) -> dict:
    """Whether check evaluates the float model with flip TTA, and why: the sidecar, checked against what the int8
    graph does (a flip-TTA graph answers the same for a face and its mirror image), or the graph alone."""
    graph = symmetry["tta"]
    seen = (f"its outputs for a face and its mirror image differ by a median of {symmetry['mirror_steps']:g} int8 "
            f"steps over {symmetry['faces']} faces, different faces by {symmetry['between_steps']:g}")
    if meta:
        recorded = meta.get("tta", "none")
        if graph == "flip" and recorded != "flip":
            raise QuantizeError(f"{sidecar_path} says tta {recorded!r}, but {tflite} averages each face with its mirror "
                                f"image ({seen}): the sidecar does not describe this model; convert it again")
        if graph == "none" and recorded == "flip":
            raise QuantizeError(f"{sidecar_path} says tta 'flip', but {tflite} does not average mirror images "
                                f"({seen}): the sidecar does not describe this model; convert it again")
        source = "sidecar, confirmed by the int8 graph" if graph else \
            "sidecar (the int8 outputs barely vary on these faces, so the graph cannot confirm it)"
        return {"applied": recorded, "source": source, **symmetry}
    if graph is None:
        return {"applied": "none", "source": "no sidecar, and the int8 outputs barely vary on these faces: assumed none",
                **symmetry}
    return {"applied": graph, "source": "detected from the int8 graph (no sidecar)", **symmetry}


if __name__ == "__main__":
    sys.exit(main())

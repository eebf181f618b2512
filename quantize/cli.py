"""The `quantize` command line: train, convert, check. Exit 0 ok, 1 accuracy gate failed, 2 bad input."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from quantize import __version__
from quantize.errors import QuantizeError
from quantize.labels import LABELS_HELP
from quantize.options import finite_float, non_negative_float, percent

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

    p = sub.add_parser("train", help="train a reference CNN on Training, validated on PublicTest",
                       description="Train a reference CNN with augmentation, cosine learning rate and early stopping; "
                       "the best epoch by PublicTest accuracy is saved. The model takes pixels/255.")
    p.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    p.add_argument("--out", required=True, type=Path, help="where to write the .keras model (and OUT.history.json)")
    p.add_argument("--arch", default="edge", choices=("edge", "seed"),
                   help="edge: compact separable CNN for a Pi (default); seed: the paper's 6-conv 3.3M model")
    p.add_argument("--size", type=int, default=48, help="input height and width in pixels (default 48)")
    p.add_argument("--epochs", type=int, default=40, help="most epochs to run (default 40)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate of the cosine schedule")
    p.add_argument("--patience", type=int, default=10, help="early stopping: epochs without a better PublicTest accuracy")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop before an epoch would end past this many minutes")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="train without flips, shifts and zoom")
    p.add_argument("--train-split", default="Training", help="split to fit (default Training)")
    p.add_argument("--val-split", default="PublicTest", help="split to validate on (default PublicTest)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--init", type=Path, metavar="MODEL",
                   help="start from this model's weights (same --arch and --size): a second, warm-restarted cycle")
    p.add_argument("--ema", type=float, default=None, metavar="MOMENTUM",
                   help="validate and keep an exponential moving average of the weights (e.g. 0.998)")
    p.set_defaults(run=_train)

    p = sub.add_parser("convert", help="convert a Keras model to a full-int8 .tflite that takes raw pixels",
                       description="Full-integer post-training quantization: int8 weights, activations, input and "
                       "output. The input normalization is folded into the graph, so the .tflite takes raw grayscale "
                       "pixels 0-255 (as int8, pixel - 128). Writes OUT and its sidecar OUT.json.",
                       epilog="Example, a model trained on pixels in [-1, 1]: quantize convert emotion_model.hdf5 "
                       "--data fer2013.csv --out fer.tflite --input-scale 0.00784 --input-offset -1")
    p.add_argument("model", type=Path, metavar="MODEL", help="Keras model: .keras, or legacy Keras 2 .h5/.hdf5")
    p.add_argument("--data", required=True, type=Path, help=DATA_HELP)
    p.add_argument("--out", required=True, type=Path, help="the .tflite file to write (the sidecar goes to OUT.json)")
    _normalization_flags(p, "default 1/255; 1 when the model has its own Rescaling or Normalization layer at its input")
    p.add_argument("--labels", help=LABELS_HELP + " (default fer2013; written into the sidecar)")
    _model_code_flag(p)
    _gate_flags(p, "warn")
    p.add_argument("--calibration-split", default="Training", help="split to draw calibration faces from (default Training)")
    p.add_argument("--calibration-size", type=int, default=300, help="stratified calibration faces (default 300)")
    p.add_argument("--eval-split", default="PublicTest",
                   help="split whose float and int8 accuracy go into the sidecar (default PublicTest; skipped if absent)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample (default 0)")
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
    p.add_argument("--input-scale", type=finite_float, metavar="S",
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


def _train(args) -> int:
    from quantize.train import TrainOptions, train

    options = TrainOptions(
        architecture=args.arch, size=args.size, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, patience=args.patience, augment=args.augment, seed=args.seed,
        time_budget_s=args.time_budget * 60 if args.time_budget else None, init=str(args.init) if args.init else None,
        ema=args.ema,
    )
    summary = train(args.data, args.out, options, args.train_split, args.val_split)
    print(f"{args.out}: {summary['parameters']:,} parameters, best PublicTest accuracy "
          f"{summary['val_accuracy']:.2%} at epoch {summary['best_epoch']}/{summary['epochs_run']}, "
          f"{summary['train_seconds'] / 60:.1f} min")
    return EXIT_OK


def _convert(args) -> int:
    from rich.console import Console

    from quantize import gate, sidecar
    from quantize.compare import compare
    from quantize.convert import to_int8_tflite
    from quantize.datasets import load_split
    from quantize.errors import DataError
    from quantize.keras_io import input_size, load_keras, resolve_normalization, sha256
    from quantize.labels import EMOTIONS, parse_labels
    from quantize.options import writable_file
    from quantize.runners import Int8Model

    console = Console(stderr=True)
    labels = parse_labels(args.labels) if args.labels else EMOTIONS
    writable_file(args.out, "--out")
    model = load_keras(args.model, args.custom_objects)
    norm, in_model = resolve_normalization(model, args.model, args.input_scale, args.input_offset)
    if in_model:
        console.print(f"{args.model} normalizes its own input ({in_model}): it is fed raw pixels (scale 1, offset 0)")
    height, width = input_size(model)
    faces = load_split(args.data, args.calibration_split)
    calibration = faces.stratified_sample(args.calibration_size, args.seed).resized(height, width)
    for finding in gate.inspect_model(model, calibration, norm, labels, gate.thresholds_from(args))["findings"]:
        print(f"quantize: warning: on the {len(calibration)} calibration faces, {finding.message}", file=sys.stderr)
    with console.status(f"calibrating and converting on {len(calibration)} faces ({height}x{width})..."):
        flatbuffer = to_int8_tflite(model, calibration, norm)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(flatbuffer)
    int8 = Int8Model(args.out)
    accuracy = None
    try:
        evaluation = load_split(args.data, args.eval_split)
    except DataError as exc:
        console.print(f"no accuracy in the sidecar: {exc}")
    else:
        with console.status(f"evaluating float and int8 on {len(evaluation)} {args.eval_split} faces..."):
            result = compare(model, args.model, int8, evaluation, norm, latency=False, labels=labels)
        accuracy = {"split": args.eval_split, "n": result["n"], "float": result["float"]["accuracy"],
                    "int8": result["int8"]["accuracy"], "drop_pts": result["drop_pts"], "agreement": result["agreement"]}
    calib = {"data": calibration.source, "n": len(calibration), "seed": args.seed}
    meta = sidecar.build(int8, args.model, sha256(args.model), norm, calib, accuracy, labels, in_model)
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
    from quantize.compare import compare
    from quantize.datasets import load_split
    from quantize.errors import ModelError
    from quantize.keras_io import Normalization, load_keras, resolve_normalization, sha256
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
    if scale is None or offset is None:
        try:
            meta = sidecar.read(args.tflite)
        except ModelError as exc:
            raise QuantizeError(f"{exc}; pass --input-scale and --input-offset instead") from None
        recorded = meta["normalization"]
        scale = recorded["input_scale"] if scale is None else scale
        offset = recorded["input_offset"] if offset is None else offset
        if meta["source"]["sha256"] != sha256(args.keras):
            print(f"quantize: warning: {args.tflite} was converted from a different file than {args.keras} "
                  f"(sha256 {meta['source']['sha256'][:12]}...)", file=sys.stderr)
    faces = load_split(args.data, args.split)
    result = compare(model, args.keras, int8, faces, Normalization(scale, offset), latency=args.latency, labels=labels)
    inspection = gate.inspect(np.array(result["float"]["by_output"]), labels, gate.thresholds_from(args))
    result["float_checks"] = gate.as_json(inspection)
    result["max_drop_pts"] = args.max_drop
    result["passed"] = result["drop_pts"] <= args.max_drop and not inspection["findings"]
    report.print_table(result, args.max_drop)
    for finding in inspection["findings"]:
        print(f"quantize: check failed: {finding.message}", file=sys.stderr)
    if args.report:
        report.write(result, args.report)
    return EXIT_OK if result["passed"] else EXIT_GATE


if __name__ == "__main__":
    sys.exit(main())

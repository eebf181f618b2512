"""The `quantize` command line: train, convert, check. Exit 0 ok, 1 accuracy gate failed, 2 bad input."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from quantize import __version__
from quantize.errors import QuantizeError

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
    p.set_defaults(run=_train)
    return parser


def _train(args) -> int:
    from quantize.train import TrainOptions, train

    options = TrainOptions(
        architecture=args.arch, size=args.size, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, patience=args.patience, augment=args.augment, seed=args.seed,
        time_budget_s=args.time_budget * 60 if args.time_budget else None,
    )
    summary = train(args.data, args.out, options, args.train_split, args.val_split)
    print(f"{args.out}: {summary['parameters']:,} parameters, best PublicTest accuracy "
          f"{summary['val_accuracy']:.2%} at epoch {summary['best_epoch']}/{summary['epochs_run']}, "
          f"{summary['train_seconds'] / 60:.1f} min")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

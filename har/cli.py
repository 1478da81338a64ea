"""Command line: ``python -m har index|train|evaluate ...``.

Errors a user caused (our :class:`HarError`) print one line ``error: <message>`` on stderr and exit 1, no
traceback. Machine-readable output (``--json``) is one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from har.errors import HarError


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter is not for users; set before tensorflow is first imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_index(args: argparse.Namespace) -> int:
    from har.data import describe, index_dataset

    index = index_dataset(args.data)
    report = describe(index)
    if args.json:
        print(json.dumps({"root": str(index.root), "classes": report.classes, "clips": report.clips,
                          "groups": report.groups, "seconds": round(report.seconds, 2),
                          "unreadable": [{"path": p, "reason": r} for p, r in report.unreadable]}))
        return 0
    print(f"{index.root}: {len(index.classes)} classes, {report.clips} clips, {report.groups} groups, "
          f"{report.seconds / 60:.1f} min of video")
    print(f"{'class':<24}{'clips':>7}{'groups':>8}{'minutes':>9}")
    for name, row in report.classes.items():
        print(f"{name:<24}{int(row['clips']):>7}{int(row['groups']):>8}{row['seconds'] / 60:>9.1f}")
    if report.unreadable:
        print(f"{len(report.unreadable)} unreadable file(s):")
        for path, reason in report.unreadable:
            print(f"  {path}: {reason}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from har.train import TrainOptions, train

    opts = TrainOptions(
        arch=args.arch, preset=args.preset, data=Path(args.data), out=Path(args.out), epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed, strategy=args.strategy,
        resume=args.resume, max_clips=args.max_clips,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    config = train(opts)
    print(json.dumps({"out": str(opts.out), "epochs": config.epochs, "best_epoch": config.best_epoch,
                      "train_seconds": config.train_seconds, "params": config.params}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from har.evaluate import evaluate_dir

    result = evaluate_dir(args.model, args.data, cache_dir=Path(args.cache_dir) if args.cache_dir else None)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']} on {result['data']}: {result['clips']} clips, accuracy {result['accuracy']:.3f}, "
          f"macro-F1 {result['macro_f1']:.3f}")
    print(f"{'class':<24}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}")
    for name, row in result["per_class"].items():
        print(f"{name:<24}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>7.3f}{row['support']:>9}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m har", description="HAR Studio: human action recognition.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="describe a folder-per-class dataset")
    s.add_argument("data", help="dataset folder (one sub-folder per class)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("train", help="train a model with a group-aware split")
    s.add_argument("--arch", choices=("lrcn", "convlstm"), required=True)
    s.add_argument("--preset", choices=("default", "tutorial"), default="default")
    s.add_argument("--data", required=True, help="dataset folder (one sub-folder per class)")
    s.add_argument("--out", required=True, help="model directory to write")
    s.add_argument("--epochs", type=int, default=60, help="at most this many epochs (early stopping)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--patience", type=int, default=12)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--strategy", choices=("auto", "mirrored", "cpu"), default="auto",
                   help="auto: one GPU if TensorFlow sees one, else CPU; mirrored: all local GPUs")
    s.add_argument("--resume", action="store_true", help="continue the unfinished run in --out")
    s.add_argument("--max-clips", type=int, default=None, help="at most this many clips per split (smoke tests)")
    s.add_argument("--cache-dir", default=None, help="frame cache (default ~/.cache/har-studio/frames)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="score a model on every clip of a folder-per-class dataset")
    s.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    s.add_argument("--data", required=True)
    s.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    s.add_argument("--cache-dir", default=None)
    s.set_defaults(func=cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except HarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

"""The ``train`` sub-command of ``python -m har``: its flags, where every recipe option defaults to a model
directory's recorded recipe (:mod:`har.train.recipe`), and its run (``--dry-run``: the options printed, nothing
trained and no TensorFlow started)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from har.errors import HarError


def add_train(sub) -> None:
    """The ``train`` parser, added to ``sub`` (the command line's sub-parsers)."""
    s = sub.add_parser("train", help="train a model with a group-aware split (default: the shipped recipe)",
                       description="Every recipe option defaults to the recipe of --like DIR's config.json, or of "
                                   "the shipped models/<arch> without --like; the flags given win over it.")
    s.add_argument("--like", metavar="DIR", default=None,
                   help="train with the recipe DIR's config.json records (e.g. models/lrcn), into DIR unless --out")
    s.add_argument("--arch", choices=("lrcn", "convlstm"), default=None)
    s.add_argument("--preset", choices=("default", "tutorial", "imagenet"), default=None)
    s.add_argument("--data", default=None, help="dataset folder (one sub-folder per class; default: the recipe's "
                                                "dataset, looked for in data/ and ../shared/data/)")
    s.add_argument("--out", default=None, help="model directory to write")
    s.add_argument("--size", type=int, default=None, help="frame side in pixels (the model's input)")
    s.add_argument("--frames", type=int, default=None, help="frames per clip")
    s.add_argument("--encoder", choices=("lite0", "lite1", "lite2"), default=None,
                   help="imagenet preset: the frozen EfficientNet-Lite frame encoder")
    s.add_argument("--encoder-blocks", type=int, default=None,
                   help="imagenet preset: MBConv blocks of the encoder (Lite0: 16 = all)")
    s.add_argument("--min-window-s", type=float, default=None,
                   help="imagenet preset: also train on temporal crops from this many seconds to the whole clip")
    s.add_argument("--epochs", type=int, default=None, help="length of the cosine LR schedule (early stop may end it)")
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--lr", type=float, default=None, help="peak learning rate")
    s.add_argument("--patience", type=int, default=None, help="early stopping: epochs without a better val_loss")
    s.add_argument("--stop-from-epoch", type=int, default=None, help="early stopping only counts from this epoch on")
    s.add_argument("--weight-decay", type=float, default=None, help="AdamW decoupled weight decay")
    s.add_argument("--norm", choices=("batch", "group"), default=None,
                   help="normalisation in the default presets (group: no running statistics)")
    s.add_argument("--average-last", type=int, default=None,
                   help="ship the average of the last N epochs' weights (SWA) instead of the best epoch")
    s.add_argument("--mixup", type=float, default=None, help="mixup Beta(a, a) parameter a (0: off)")
    s.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="after the validated run, train a fresh model on training + validation groups for the best "
                        "epoch's count of epochs and ship it (test groups stay unseen)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--strategy", choices=("auto", "mirrored", "multiworker", "cpu"), default=None,
                   help="auto: one GPU if TensorFlow sees one, else CPU; mirrored: all local GPUs; "
                   "multiworker: several machines described by TF_CONFIG")
    s.add_argument("--export", action=argparse.BooleanOptionalAction, default=None,
                   help="write the ONNX copy beside model.keras (--no-export: served by TensorFlow only)")
    s.add_argument("--openset", action=argparse.BooleanOptionalAction, default=None,
                   help="imagenet preset: fit the familiarity score on held-out heads (--no-openset: answers rest "
                        "on the top probability alone)")
    s.add_argument("--others", default=None,
                   help="imagenet preset: folder per class of clips of other actions (none of the dataset's) that "
                        "the open-set score learns what is not a known action from (default: the recipe's, looked "
                        "for as --data is)")
    s.add_argument("--resume", action="store_true", help="continue the unfinished run in --out")
    s.add_argument("--max-clips", type=int, default=None, help="at most this many clips per split (smoke tests)")
    s.add_argument("--cache-dir", default=None, help="frame cache (default ~/.cache/har-studio/frames)")
    s.add_argument("--dry-run", action="store_true", help="print the options it would train with, and stop")
    s.add_argument("--json", action="store_true", help="with --dry-run: one JSON object in config.json's keys")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``python -m har train``: the recipe merged with the flags given, printed (``--dry-run``) or trained."""
    from har.train import recipe
    from har.train.options import check

    overrides = {name: getattr(args, name) for name in recipe.RECIPE_OPTIONS
                 if getattr(args, name, None) is not None}  # the flags given: they win over the recipe
    if args.like:
        directory = recipe.like_dir(args.like)
    elif args.arch:
        directory = recipe.shipped_dir(args.arch)  # the shipped recipe is the default
    else:
        raise HarError("train needs --like DIR (a trained model directory whose recipe to train with) or --arch.")
    if not args.like and not args.out:
        raise HarError("train needs --out DIR (the model directory to write); with --like DIR it retrains into DIR.")
    opts = recipe.options_like(directory, data=args.data, out=args.out, resume=args.resume, max_clips=args.max_clips,
                               cache_dir=Path(args.cache_dir) if args.cache_dir else None, **overrides)
    check(opts)  # options that do not go together fail before TensorFlow starts
    if args.dry_run:
        shown = recipe.recipe_json(opts)
        if args.json:
            print(json.dumps(shown))
        else:
            print(f"would train {opts.out} from {opts.data} with:")
            hyper = shown.pop("hyper")
            for key, value in [*shown.items(), *hyper.items()]:
                print(f"  {key:<18}{value}")
        return 0
    from har.serve.runtime import load_tensorflow

    load_tensorflow()  # TensorFlow's C++ start-up chatter is not for users: imported with stderr silenced
    from har.train.fit import train

    config = train(opts)
    if config is None:  # a --strategy multiworker worker other than the chief: worker 0 writes the model
        print(json.dumps({"out": str(opts.out), "chief": False}))
        return 0
    print(json.dumps({"out": str(opts.out), "epochs": config.epochs, "best_epoch": config.best_epoch,
                      "train_seconds": config.train_seconds, "params": config.params}))
    return 0

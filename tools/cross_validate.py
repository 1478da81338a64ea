"""Compare variants of the ImageNet LRCN by group k-fold cross-validation over the groups that are not test groups.

One validation split of 3 groups per class cannot tell variants apart once they score 95 % on it; four folds
together score every non-test clip once. The test groups of the shipped split (seed 0) are never read: they are
taken out first, the other 14 groups of each class are dealt into ``--folds`` folds (seeded), and each fold trains
the shipped recipe on the others and is validated on it. The ``test`` part of each fold's run is the fold itself,
so its ``metrics.json`` is the fold's validation metrics at the best epoch.

    python tools/cross_validate.py --variant shipped --fold 0 [--folds 4] [--out scratch/cv]
    python tools/cross_validate.py --summary [--out scratch/cv]

Variants: ``shipped`` (each frame's pooled vector beside its change from the previous frame), ``no-motion`` (the
pooled vectors alone: the LRCN shipped before) and ``avg-max`` (average- and max-pooled vectors, no motion).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from har.data.dataset import split_groups  # noqa: E402

VARIANTS = ("shipped", "no-motion", "avg-max")


def fold_split(index, fold: int, folds: int, seed: int = 0) -> dict[str, list[str]]:
    """The shipped split's test groups left out; fold ``fold`` of the rest validates, the others train."""
    shipped = split_groups(index, seed=seed)  # the original (run() patches har.data.dataset's name only)
    rng = random.Random(1234)
    by_class: dict[str, list[str]] = defaultdict(list)
    for g in shipped["train"] + shipped["validation"]:
        by_class[g.split("/")[0]].append(g)
    val: list[str] = []
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        rng.shuffle(groups)
        val += groups[fold::folds]
    train = [g for gs in by_class.values() for g in gs if g not in val]
    assert not (set(val) | set(train)) & set(shipped["test"])
    return {"train": sorted(train), "validation": sorted(val), "test": sorted(val)}


def lrcn_variant(variant: str, shipped):
    """The LRCN's part after the encoder for ``variant``: ``(maps, num_classes) -> probabilities``."""
    from keras import layers

    from har.models import builders as models

    def temporal(x, num_classes: int):
        if variant == "shipped":
            return shipped(x, num_classes)
        v = layers.TimeDistributed(layers.GlobalAveragePooling2D(), name="gap")(x)
        if variant == "avg-max":
            peaks = layers.TimeDistributed(layers.GlobalMaxPooling2D(), name="gmp")(x)
            v = layers.Concatenate(name="avg_max")([v, peaks])
        v = layers.BatchNormalization(momentum=models.BN_MOMENTUM, name="bn_features")(v)
        return models.lstm_head(v, num_classes)

    return temporal


def run(variant: str, fold: int, folds: int, data: Path, out: Path) -> None:
    import har.data.dataset
    from har.models import builders as models
    from har.train.fit import TrainOptions, train

    har.data.dataset.split_groups = lambda index, seed=0, **_: fold_split(index, fold, folds, seed)
    models.TEMPORAL["lrcn"] = lrcn_variant(variant, models.TEMPORAL["lrcn"])
    train(TrainOptions(arch="lrcn", preset="imagenet", data=data, out=out / f"{variant}_f{fold}"))


def summary(out: Path) -> None:
    runs: dict[str, list[tuple]] = defaultdict(list)
    for d in sorted(out.glob("*_f*")):
        if not (d / "metrics.json").is_file():
            continue
        variant, fold = d.name.rsplit("_f", 1)
        rows = list(csv.DictReader(open(d / "history.csv")))
        losses = [float(r["val_loss"]) for r in rows]
        m = json.loads((d / "metrics.json").read_text())
        last = losses[-10:]
        runs[variant].append((int(fold), min(losses), losses.index(min(losses)) + 1, sum(last) / len(last),
                              m["accuracy"], m["clips"]))
    for variant, rs in runs.items():
        for fold, best, epoch, last10, acc, clips in sorted(rs):
            print(f"{variant:10s} fold {fold}: best val loss {best:.3f} (epoch {epoch}), last-10 {last10:.3f}, "
                  f"accuracy {acc:.3f} of {clips}")
        right = sum(round(r[4] * r[5]) for r in rs)
        clips = sum(r[5] for r in rs)
        print(f"{variant:10s} {len(rs)} folds: mean best val loss {sum(r[1] for r in rs) / len(rs):.3f}, "
              f"last-10 {sum(r[3] for r in rs) / len(rs):.3f}, pooled accuracy {right / clips:.3f} ({right}/{clips})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=VARIANTS, default="shipped")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--data", type=Path, default=Path("../shared/data/ucf101-6"))
    p.add_argument("--out", type=Path, default=Path("scratch/cv"))
    p.add_argument("--summary", action="store_true", help="print the finished folds' figures")
    args = p.parse_args()
    if args.summary:
        summary(args.out)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(args.variant, args.fold, args.folds, args.data, args.out)


if __name__ == "__main__":
    main()

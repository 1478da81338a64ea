"""Issue 17, v2: choose the open-set score's evidence and the similarity's weight, per architecture, by
leave-one-class-out on the NON-test groups of the shipped split.

For each class in turn: a five-class temporal head is trained on the other classes' training groups (cached encoder
features, the shipped recipe's optimizer and augmented views, a cosine schedule over the shipped refit's epoch
count: 8 for the LRCN, 18 for the ConvLSTM); the similarity's bank is the same clips' views; knowns are their
validation groups, unknowns every non-test clip of the left-out class. Scores: the similarity alone (v1), the top
probability, the max logit, the energy, and the standardised evidence plus w x the standardised similarity (each
standardised on the knowns). The test groups and the wild videos are never read. Reads the feature cache a training
run left (``python -m har train ... --cache-dir C``).

``--grouped`` (session 11) asks the same question of groups further from the training ones: all non-test clips,
their groups dealt into the four folds the shipped fit uses; for each left-out class and each fold, a head and a
bank from the other folds' five classes, knowns that fold's clips of those classes; each class's AUROC the mean
over the folds (24 heads in all).

``--oe`` (session 13) trains every head with outlier exposure (Hendrycks et al., ICLR 2019) on synthetic outliers
made from its own training clips (:func:`oe_dataset`), to see whether a head taught to spread its probability over
mixtures of its classes separates a class it never saw better. Each row also gives the heads' accuracy on the knowns.

    python tools/openset_evidence.py --model lrcn --cache /work/scratch/cache [--grouped] [--oe] [--out F.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from har.config import ModelConfig  # noqa: E402
from har.data.dataset import clips_of, index_dataset  # noqa: E402
from har.data.features import features_of  # noqa: E402
from har.modeldir import resolve_model_dir  # noqa: E402
from har.openset.heldout import logits_of, train_head  # noqa: E402
from har.openset.report import auroc  # noqa: E402
from har.openset.score import (  # noqa: E402
    Familiarity,
    combine_scores,
    describe,
    energy,
    evidence_of,
    group_folds,
    softmax,
)
from har.train.recipe import options_of  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
OE_WEIGHT = 0.5  # of the outliers' cross-entropy to the uniform distribution (Hendrycks et al.'s lambda)
OE_MIX = (0.35, 0.65)  # range of the share of a clip in its synthetic outlier


def oe_dataset(opts, x: np.ndarray, y: np.ndarray, classes: int):
    """The shipped recipe's batches of ``(features, labels)`` with as many synthetic outliers: each clip's view mixed
    with the next clip's in the batch by a weight in :data:`OE_MIX`, its target uniform over the ``classes``, its
    sample weight :data:`OE_WEIGHT` (0 when the two clips share a class: that mixture is no outlier). Labels one-hot,
    so the loss is the categorical cross-entropy with sample weights."""
    import tensorflow as tf

    from har.data.trainsets import train_dataset

    def expose(xy, s):
        xb, yb = xy
        partner, partner_y = tf.roll(xb, 1, 0), tf.roll(yb, 1, 0)
        b = tf.shape(xb)[0]
        lam = tf.random.stateless_uniform((b,), tf.cast(s, tf.int64), *OE_MIX)
        lam = tf.reshape(lam, [-1] + [1] * (xb.shape.rank - 1))  # one weight per clip
        outliers = lam * xb + (1.0 - lam) * partner
        uniform = tf.fill([b, classes], 1.0 / classes)
        weight = OE_WEIGHT * tf.cast(tf.not_equal(yb, partner_y), tf.float32)
        return (tf.concat([xb, outliers], 0), tf.concat([tf.one_hot(yb, classes), uniform], 0),
                tf.concat([tf.ones([b]), weight], 0))

    seeds = tf.data.Dataset.random(seed=opts.seed + 7).batch(2)
    return tf.data.Dataset.zip(train_dataset(opts, x, y, classes), seeds).map(expose)


def train_oe_head(opts, x: np.ndarray, y: np.ndarray, classes: int, epochs: int, seed: int):
    """:func:`har.openset.heldout.train_head` with outlier exposure: the same head, optimizer and schedule, trained on
    :func:`oe_dataset`."""
    import keras

    from har.models import builders as models
    from har.train.schedule import lr_at

    keras.utils.set_random_seed(seed)
    head = models.temporal_head(opts.arch, tuple(x.shape[2:]), classes)
    head.compile(optimizer=keras.optimizers.AdamW(opts.lr, weight_decay=opts.weight_decay),
                 loss=keras.losses.CategoricalCrossentropy())
    head.fit(oe_dataset(opts, x, y, classes), epochs=epochs, verbose=0,
             callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch: lr_at(epoch, opts))])
    return head


def class_similarity(fam: Familiarity, bank_y: np.ndarray, raw: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Session 12's candidate: the mean cosine similarity ``(n,)`` to the K nearest bank descriptors *of the class
    the head predicts* (labels ``bank_y`` ``(m,)`` of the bank's rows), not of the whole bank."""
    sims = fam._unit(np.asarray(raw, np.float32)) @ fam.bank.T  # (n, m)
    out = np.empty(len(raw), np.float32)
    for i, (row, c) in enumerate(zip(sims, predicted, strict=True)):
        own = row[bank_y == c]
        k = min(fam.k, len(own))
        out[i] = np.partition(own, len(own) - k)[-k:].mean()
    return out


def score_all(head, bank_raw: np.ndarray, known_x: np.ndarray, known_raw: np.ndarray, unknown_x: np.ndarray,
              unknown_raw: np.ndarray, bank_y: np.ndarray | None = None,
              known_y: np.ndarray | None = None) -> dict[str, float]:
    """AUROC of every candidate score, knowns (as served) against unknowns, for one five-class head and the bank of
    its training clips' views ``bank_raw`` ``(n, views, C)``; combined scores standardised on the knowns. With the
    bank clips' labels ``bank_y`` ``(n,)`` (the head's classes), also the class-conditional similarity's; with the
    knowns' labels ``known_y``, also the head's accuracy on them (row "accuracy")."""
    fam = Familiarity.fit(bank_raw.reshape(-1, bank_raw.shape[-1]), known_raw)
    lk, lu = logits_of(head, known_x), logits_of(head, unknown_x)
    sk, su = fam.similarity(known_raw), fam.similarity(unknown_raw)
    sims = {"similarity": (sk, su)}
    if bank_y is not None:
        flat_y = np.repeat(bank_y, bank_raw.shape[1])
        sims["class similarity"] = (class_similarity(fam, flat_y, known_raw, lk.argmax(1)),
                                    class_similarity(fam, flat_y, unknown_raw, lu.argmax(1)))
    single = {**sims, "top probability": (softmax(lk).max(1), softmax(lu).max(1)),
              "max logit": (lk.max(1), lu.max(1)), "energy": (energy(lk), energy(lu))}
    for kind in ("energy", "log_top_probability"):
        ek, eu = evidence_of(lk, kind), evidence_of(lu, kind)
        for sim_name, (sk, su) in sims.items():
            for w in WEIGHTS:
                scales = np.array([ek.mean(), ek.std(), sk.mean(), sk.std(), w])  # standardised on the knowns
                single[f"{kind} + {w:g} x {sim_name}"] = (combine_scores(scales, ek, sk),
                                                          combine_scores(scales, eu, su))
    out = {name: auroc(k, u) for name, (k, u) in single.items()}
    if known_y is not None:
        out["accuracy"] = float((lk.argmax(1) == known_y).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lrcn", help="a shipped model (its split, recipe and encoder)")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ucf101-6")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--grouped", action="store_true",
                    help="knowns from every group fold in turn (4 heads per class), not seed 0's validation groups")
    ap.add_argument("--oe", action="store_true", help="heads trained with outlier exposure (oe_dataset)")
    args = ap.parse_args()
    import keras

    directory = resolve_model_dir(args.model)
    config = ModelConfig.load(directory)
    epochs = config.best_epoch
    opts = options_of(config, args.data, "unused", args.cache)
    opts = dataclasses.replace(opts, epochs=epochs)  # the cosine schedule over the fixed epochs
    index = index_dataset(args.data)
    model = keras.saving.load_model(directory / "model.keras", safe_mode=True)
    parts = {s: clips_of(index, config.split[s]) for s in ("train", "validation")}
    x = {s: features_of(c, model, config.sampling, config.min_window_s, args.cache, desc=s) for s, c in parts.items()}
    y = {s: index.labels(c) for s, c in parts.items()}
    raw = {s: describe(x[s].reshape(-1, *x[s].shape[2:])).reshape(len(x[s]), x[s].shape[1], -1) for s in x}
    scores: dict[str, list[float]] = {}
    train = train_oe_head if args.oe else train_head
    if args.grouped:  # every non-test clip, the groups dealt into folds as the shipped fit deals them
        xa = np.concatenate([x["train"], x["validation"]])
        ya, ra = np.concatenate([y["train"], y["validation"]]), np.concatenate([raw["train"], raw["validation"]])
        fold = group_folds([c.group for s in ("train", "validation") for c in parts[s]])
    for c, label in enumerate(index.classes):
        if not args.grouped:
            tr, va = y["train"] != c, y["validation"] != c
            head = train(opts, x["train"][tr], y["train"][tr] - (y["train"][tr] > c), 5, epochs, opts.seed)
            unknown_x = np.concatenate([x["train"][~tr], x["validation"][~va]])[:, 0]
            unknown_raw = np.concatenate([raw["train"][~tr], raw["validation"][~va]])[:, 0]
            for name, a in score_all(head, raw["train"][tr], x["validation"][va][:, 0], raw["validation"][va][:, 0],
                                     unknown_x, unknown_raw,
                                     known_y=y["validation"][va] - (y["validation"][va] > c)).items():
                scores.setdefault(name, []).append(a)
        else:  # per fold: head and bank from the other folds' five classes; knowns this fold's; the class unknown
            per_fold: dict[str, list[float]] = {}
            for f in range(int(fold.max()) + 1):
                tr, kn = (ya != c) & (fold != f), (ya != c) & (fold == f)
                y5 = ya[tr] - (ya[tr] > c)  # five classes: 0..4
                head = train(opts, xa[tr], y5, 5, epochs, opts.seed + 1 + f)
                for name, a in score_all(head, ra[tr], xa[kn][:, 0], ra[kn][:, 0], xa[ya == c][:, 0],
                                         ra[ya == c][:, 0], y5, known_y=ya[kn] - (ya[kn] > c)).items():
                    per_fold.setdefault(name, []).append(a)
            for name, v in per_fold.items():
                scores.setdefault(name, []).append(float(np.mean(v)))
        print(f"left out {label}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in scores.items() if " x " not in n),
              flush=True)
    rows = {name: {"mean": float(np.mean(v)), "per_class": [round(a, 4) for a in v]} for name, v in scores.items()}
    print(f"{config.arch}: {'heads with outlier exposure' if args.oe else 'plain heads'}")
    for name, row in rows.items():
        measure = "mean accuracy on the knowns" if name == "accuracy" else "mean AUROC"
        print(f"{config.arch} {name:40s} {measure} {row['mean']:.4f}  {row['per_class']}")
    best = max((n for n in rows if " x " in n), key=lambda n: rows[n]["mean"])
    print(f"chosen for {config.arch}: {best} ({rows[best]['mean']:.4f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": config.arch, "grouped": args.grouped, "oe": args.oe, "rows": rows,
                                        "chosen": best}, indent=1))


if __name__ == "__main__":
    main()

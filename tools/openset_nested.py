"""Issue 17: how far the shipped operating point ("keep 95 % of the non-test clips scored held out") carries to
groups it was not set on, measured on the NON-test groups alone.

The shipped score's held-out parts are rebuilt exactly as ``python -m har openset`` builds them (four group folds:
logits from heads trained without the fold, similarity against a bank without it); the threshold recomputed from
them must equal the shipped one. Then, for each fold in turn, the threshold is set on the other three folds' scores
and the fold's rejection (familiarity under it, or top probability under the model's bar) is counted
(:func:`har.openset.score.nested_rejected`): once keeping the nominal 95 % in sample, once keeping the shipped share
(raised until the pooled rejection is at most 5 %, :func:`har.openset.score.grouped_operating_point`). The test
groups and the wild videos are never read. Reads the feature cache a training run left.

    python tools/openset_nested.py --model lrcn --cache /work/scratch/cache
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from har.config import ModelConfig  # noqa: E402
from har.data.trainsets import TrainData  # noqa: E402
from har.modeldir import resolve_model_dir  # noqa: E402
from har.openset.heldout import held_out_logits  # noqa: E402
from har.openset.score import (  # noqa: E402
    FOLDS,
    Familiarity,
    describe,
    evidence_of,
    group_folds,
    held_out_similarity,
    nested_rejected,
    operating_point,
    softmax,
)
from har.train.options import built  # noqa: E402
from har.train.recipe import options_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lrcn", help="a shipped model directory or name")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ucf101-6")
    args = ap.parse_args()
    directory = resolve_model_dir(args.model)
    config, fam = ModelConfig.load(directory), Familiarity.load(directory)
    keep = float(config.openset["keep"])
    opts = options_of(config, args.data, directory, args.cache)
    data = TrainData.load(opts, built)
    groups = [c.group for c in data.parts["train"]] + [c.group for c in data.parts["validation"]]
    x, y = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    logits = held_out_logits(opts, x, y, groups, len(config.classes), config.best_epoch)
    fold = group_folds(groups, FOLDS)
    raw = describe(x.reshape(-1, *x.shape[2:])).reshape(len(x), x.shape[1], -1)
    score = fam.combined(evidence_of(logits, fam.evidence), held_out_similarity(raw, fold, fam.k))
    rejected = softmax(logits).max(axis=1) < config.uncertain_below
    share = float(config.openset.get("kept_in_sample", keep))
    threshold, _ = operating_point(score, share, rejected)
    print(f"{args.model}: threshold from the {len(x)} held-out clips {threshold:.6f}, shipped {fam.threshold:.6f}")
    shares = {f"keep {keep:.0%} in sample": keep, f"keep {share:.2%} in sample (shipped)": share}
    rows = {name: nested_rejected(score, fold, s, rejected) for name, s in shares.items()}
    print("| fold | clips | groups | " + " | ".join(f"rejected, {name}" for name in rows) + " |")
    print("|---:|---:|---:|" + "---:|" * len(rows))
    for f in [*range(FOLDS), None]:
        inside = fold == f if f is not None else np.ones(len(x), bool)
        n_groups = len(set(np.array(groups)[inside]))
        cells = " | ".join(f"{lost[inside].mean():.1%}" for lost in rows.values())
        print(f"| {'all' if f is None else f} | {inside.sum()} | {n_groups} | {cells} |")


if __name__ == "__main__":
    main()

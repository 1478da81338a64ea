"""Issue 17, v2: choose the open-set score's evidence and the similarity's weight, per architecture, by
leave-one-class-out on the NON-test groups of the shipped split.

For each class in turn: a five-class temporal head is trained on the other classes' training groups (cached encoder
features, the shipped recipe's optimizer and augmented views, a cosine schedule over the shipped refit's epoch
count: 8 for the LRCN, 18 for the ConvLSTM); the similarity's bank is the same clips' views; knowns are their
validation groups, unknowns every non-test clip of the left-out class. Scores: the similarity alone (v1), the top
probability, the max logit, the energy, and the standardised evidence plus w x the standardised similarity (each
standardised on the knowns). The test groups and the wild videos are never read. Reads the feature cache a training
run left (``python -m har train ... --cache-dir C``).

    python tools/openset_evidence.py --model lrcn --cache /work/scratch/cache [--out scratch/openset_evidence.json]
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
from har.data import clips_of, index_dataset  # noqa: E402
from har.features import features_of  # noqa: E402
from har.heldout import logits_of, train_head  # noqa: E402
from har.modeldir import resolve_model_dir  # noqa: E402
from har.openset import Familiarity, describe, energy, evidence_of, softmax  # noqa: E402
from har.openset_report import auroc  # noqa: E402
from har.train import options_of  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lrcn", help="a shipped model (its split, recipe and encoder)")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ucf101-6")
    ap.add_argument("--out", type=Path, default=None)
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
    for c, label in enumerate(index.classes):
        tr, va = y["train"] != c, y["validation"] != c
        head = train_head(opts, x["train"][tr], y["train"][tr] - (y["train"][tr] > c), 5, epochs, opts.seed)
        bank = raw["train"][tr].reshape(-1, raw["train"].shape[-1])
        fam = Familiarity.fit(bank, raw["validation"][va][:, 0])
        unknown_x = np.concatenate([x["train"][~tr], x["validation"][~va]])[:, 0]
        unknown_raw = np.concatenate([raw["train"][~tr], raw["validation"][~va]])[:, 0]
        lk, lu = logits_of(head, x["validation"][va][:, 0]), logits_of(head, unknown_x)
        sk, su = fam.similarity(raw["validation"][va][:, 0]), fam.similarity(unknown_raw)
        single = {"similarity": (sk, su), "top probability": (softmax(lk).max(1), softmax(lu).max(1)),
                  "max logit": (lk.max(1), lu.max(1)), "energy": (energy(lk), energy(lu))}
        for kind in ("energy", "log_top_probability"):
            ek, eu = evidence_of(lk, kind), evidence_of(lu, kind)
            for w in WEIGHTS:
                single[f"{kind} + {w:g} x similarity"] = (
                    (ek - ek.mean()) / ek.std() + w * (sk - sk.mean()) / sk.std(),
                    (eu - ek.mean()) / ek.std() + w * (su - sk.mean()) / sk.std())
        for name, (k, u) in single.items():
            scores.setdefault(name, []).append(auroc(k, u))
        print(f"left out {label}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in scores.items() if " x " not in n),
              flush=True)
    rows = {name: {"mean": float(np.mean(v)), "per_class": [round(a, 4) for a in v]} for name, v in scores.items()}
    for name, row in rows.items():
        print(f"{config.arch} {name:40s} mean AUROC {row['mean']:.4f}  {row['per_class']}")
    best = max((n for n in rows if " x " in n), key=lambda n: rows[n]["mean"])
    print(f"chosen for {config.arch}: {best} ({rows[best]['mean']:.4f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": config.arch, "rows": rows, "chosen": best}, indent=1))


if __name__ == "__main__":
    main()

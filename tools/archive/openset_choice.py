"""Issue 17: choose the familiarity score's variant by leave-one-class-out on the NON-test groups of seed 0.

For each of the six classes in turn: the bank is the other five classes' training groups (every cached view), the
knowns are their validation groups' views, the unknowns are the left-out class's clips (training and validation
groups). The test groups are never read, the wild videos neither: they are for the report only. Reads the cached
encoder features a training run left (``har.data.features``), so run it after ``python -m har train ... --cache-dir C``.

    python tools/openset_choice.py --cache /work/scratch/cache [--seed 0 --size 128 --min-window-s 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from har.data.dataset import clips_of, file_digest, index_dataset, split_groups  # noqa: E402
from har.openset.report import auroc  # noqa: E402
from har.openset.score import Familiarity, describe, pooled  # noqa: E402


def cached(clips, cache: Path, tag_suffix: str) -> np.ndarray:
    out = []
    for c in clips:
        hits = sorted((cache / "features").glob(f"{file_digest(c.path)}-*{tag_suffix}.npy"))
        if not hits:
            raise SystemExit(f"no cached features for {c.path}")
        out.append(np.load(hits[0]))
    return np.stack(out)  # (n, views, frames, h, w, C) float16


def frame_knn(bank: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Frame-level variant: each query frame's best cosine similarity to any bank frame, mean over the clip."""
    b = pooled(bank.reshape(-1, 1, *bank.shape[2:]))[:, 0]
    mu, sd = b.mean(0), b.std(0) + 1e-6
    b = (b - mu) / sd
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    q = (pooled(query) - mu) / sd
    q /= np.linalg.norm(q, axis=2, keepdims=True)
    return np.stack([(qi @ b.T).max(axis=1).mean() for qi in q])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0, help="the split's seed (as train's)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--min-window-s", type=float, default=2.0)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/ucf101-6")
    ap.add_argument("--variants", nargs="*", help="only these (default: all)")
    ap.add_argument("--out", type=Path, default=Path("scratch/openset_choice.json"))
    args = ap.parse_args()
    index = index_dataset(args.data)
    split = split_groups(index, seed=args.seed)
    suffix = f"-f20-s{args.size}-w{args.min_window_s:g}-v1"
    parts = {s: clips_of(index, split[s]) for s in ("train", "validation")}
    x = {s: cached(c, args.cache, suffix) for s, c in parts.items()}
    y = {s: index.labels(c) for s, c in parts.items()}
    views = x["train"].shape[1]
    crops = slice(5, views)  # har.data.features: view 0 served, 1-4 whole, 5-8 temporal crops
    def mean_std(clips: np.ndarray) -> np.ndarray:  # [mean, std] over frames: the variant the shipped mean beat
        f = pooled(clips.reshape(-1, *clips.shape[2:]))
        return np.concatenate([describe(f), f.std(axis=1)], axis=1).reshape(len(clips), views, -1)

    raw = {s: mean_std(x[s]) for s in x}  # the first half of the channels is har.openset.score.describe's mean
    variants = ({f"meanstd-k{k}": ("meanstd", k) for k in (1, 5, 10, 20)}
                | {f"mean-k{k}": ("mean", k) for k in (1, 5, 10, 20, 50, 100, 200, 500)} | {"frame-nn": ("frame", 1)})
    if args.variants:
        variants = {k: v for k, v in variants.items() if k in args.variants}
    rows = {}
    for name, (kind, k) in variants.items():
        per_class = []
        for c, label in enumerate(index.classes):
            tr, va = y["train"] != c, y["validation"] != c
            dims = slice(None) if kind != "mean" else slice(0, raw["train"].shape[-1] // 2)
            bank = raw["train"][tr][..., dims]
            bank = bank.reshape(-1, bank.shape[-1])
            unk = np.concatenate([raw["train"][~tr], raw["validation"][~va]])[..., dims]
            kn = raw["validation"][va][..., dims]
            if kind == "frame":
                unk_x = np.concatenate([x["train"][~tr], x["validation"][~va]])
                bank_x = x["train"][tr]
                score = {"known0": frame_knn(bank_x, x["validation"][va][:, 0]),
                         "unknown0": frame_knn(bank_x, unk_x[:, 0])}
                score["knownc"] = frame_knn(bank_x, x["validation"][va][:, crops].reshape(-1, *x["train"].shape[2:]))
                score["unknownc"] = frame_knn(bank_x, unk_x[:, crops].reshape(-1, *x["train"].shape[2:]))
                thr = np.quantile(np.concatenate([score["known0"], score["knownc"]]), 0.05)
            else:
                fam = Familiarity.fit(bank, kn.reshape(-1, kn.shape[-1]), k=k)
                score = {"known0": fam.of_descriptors(kn[:, 0]), "unknown0": fam.of_descriptors(unk[:, 0]),
                         "knownc": fam.of_descriptors(kn[:, crops].reshape(-1, kn.shape[-1])),
                         "unknownc": fam.of_descriptors(unk[:, crops].reshape(-1, unk.shape[-1]))}
                thr = fam.threshold
            per_class.append({
                "left_out": label, "auroc_clip": auroc(score["known0"], score["unknown0"]),
                "auroc_crop": auroc(score["knownc"], score["unknownc"]),
                "known_rejected_clip": float(np.mean(score["known0"] < thr)),
                "unknown_caught_clip": float(np.mean(score["unknown0"] < thr)),
                "unknown_caught_crop": float(np.mean(score["unknownc"] < thr)),
                "known_rejected_crop": float(np.mean(score["knownc"] < thr)),
                # the threshold keeping 95 % of the served known clips alone (view 0), not of every view
                "thr0_known_rejected_crop": float(np.mean(score["knownc"] < np.quantile(score["known0"], 0.05))),
                "thr0_unknown_caught_clip": float(np.mean(score["unknown0"] < np.quantile(score["known0"], 0.05))),
                "thr0_unknown_caught_crop": float(np.mean(score["unknownc"] < np.quantile(score["known0"], 0.05)))})
        mean = {key: float(np.mean([r[key] for r in per_class])) for key in per_class[0] if key != "left_out"}
        rows[name] = {"mean": mean, "per_class": per_class}
        print(f"{name:14s} " + "  ".join(f"{key} {v:.3f}" for key, v in mean.items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

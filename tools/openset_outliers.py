"""Choose how the open set learns from real other actions: leave-other-class-out over the nine other-action classes.

For each of the nine other classes ``c`` and each of the four group folds ``f`` of a shipped model's non-test known
clips, a candidate score is fitted on the known clips outside ``f`` and the other-action clips outside ``c``, and
scores the known clips of ``f`` and the clips of ``c`` (each as served, view 0). Nothing of ``c`` or ``f`` is seen by
what scores it: the temporal heads are the four fold heads of the shipped recipe (trained without ``f``; they never
see any other action), the banks hold none of ``f``'s groups. The test groups and the wild videos are not read.

Reported per candidate: AUROC (known held out vs other class held out, pooled), the known clips a threshold set on
the other folds' known scores (keeping 95 %) rejects, the other-action clips that threshold flags, and the same
threshold's rejections of the known clips' 2-s crops (what the timeline reads).

    HAR_CACHE_DIR=/work/cache python tools/openset_outliers.py --model models/lrcn --out scratch/lrcn.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from har.config import ModelConfig, Sampling
from har.data.dataset import clips_of, default_cache_dir, index_dataset
from har.data.features import WHOLE_VIEWS, features_of
from har.openset.heldout import train_head
from har.openset.score import describe, group_folds
from har.train.options import built
from har.train.recipe import options_of

log = logging.getLogger("openset_outliers")


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a known > score of an other)."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def logits_and_embedding(head, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, embedding)`` of a temporal head (ending in "probs") on cached features ``x``."""
    import keras

    from har.serve.surgery import with_logits

    probs = head.get_layer("probs")
    both = keras.Model(head.input, [with_logits(head).output[1], probs.input])
    out = both.predict(np.asarray(x, np.float32), batch_size=64, verbose=0)
    return np.asarray(out[0]), np.asarray(out[1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="../shared/data/ucf101-6")
    p.add_argument("--others", default="../shared/data/other-actions")
    p.add_argument("--out", required=True)
    p.add_argument("--analyse", action="store_true", help="only the candidates' figures, from an earlier dump")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.analyse:
        arch = ModelConfig.load(a.model).arch
        rows = analyse(Path(a.out).with_suffix(".npz"), arch)
        Path(a.out).write_text(json.dumps(rows, indent=1, default=float))
        return
    config = ModelConfig.load(a.model)
    opts = options_of(config, a.data, "/tmp/unused")
    cache = Path(opts.cache_dir or default_cache_dir())
    index = index_dataset(a.data)
    known = clips_of(index, config.split["train"] + config.split["validation"])
    others_index = index_dataset(a.others)
    model = built(opts, len(index.classes))
    sampling = Sampling(opts.frames, opts.size)
    xk = features_of(known, model, sampling, opts.min_window_s, cache)
    xo = features_of(others_index.clips, model, sampling, opts.min_window_s, cache)
    yk = index.labels(known)
    groups = [c.group for c in known]
    fold = group_folds(groups)
    oclass = np.array([others_index.classes.index(c.label) for c in others_index.clips])
    epochs = int(config.hyper.get("refit", {}).get("epochs") or config.best_epoch or 8)
    started = time.perf_counter()
    # fold heads: known logits of fold f's clips, and every other clip's logits by each fold head, all views
    known_logits = np.zeros((len(xk), xk.shape[1], len(index.classes)), np.float32)
    other_logits = np.zeros((4, len(xo), xo.shape[1], len(index.classes)), np.float32)
    known_emb = np.zeros((len(xk), xk.shape[1], 64), np.float32)
    other_emb = np.zeros((4, len(xo), xo.shape[1], 64), np.float32)
    for f in range(4):
        inside = fold == f
        head = train_head(opts, xk[~inside], yk[~inside], len(index.classes), epochs, opts.seed + 1 + f)
        lk, ek = logits_and_embedding(head, xk[inside].reshape(-1, *xk.shape[2:]))
        known_logits[inside] = lk.reshape(int(inside.sum()), xk.shape[1], -1)
        known_emb[inside] = ek.reshape(int(inside.sum()), xk.shape[1], -1)
        lo, eo = logits_and_embedding(head, xo.reshape(-1, *xo.shape[2:]))
        other_logits[f] = lo.reshape(len(xo), xo.shape[1], -1)
        other_emb[f] = eo.reshape(len(xo), xo.shape[1], -1)
        log.info("fold head %d in %.0f s", f, time.perf_counter() - started)
    rk = describe(xk.reshape(-1, *xk.shape[2:])).reshape(len(xk), xk.shape[1], -1)
    ro = describe(xo.reshape(-1, *xo.shape[2:])).reshape(len(xo), xo.shape[1], -1)
    np.savez_compressed(Path(a.out).with_suffix(".npz"), rk=rk, ro=ro, known_logits=known_logits,
                        other_logits=other_logits, known_emb=known_emb, other_emb=other_emb, yk=yk, fold=fold,
                        oclass=oclass, groups=np.array(groups))
    log.info("saved descriptors and logits")
    log.info("done in %.0f s", time.perf_counter() - started)


def analyse(dump: Path, arch: str, keep: float = 0.95, uncertain_below: float = 0.5) -> list[dict]:
    """Every candidate's leave-other-class-out figures from a dump of descriptors and fold-head logits."""
    from har.openset.outliers import Others, held_out_gate, standardised
    from har.openset.score import CHOSEN, evidence_of, held_out_similarity, nested_rejected, operating_point, softmax

    d = np.load(dump)
    rk, ro, kl, ol, yk, fold, oclass = (d[k] for k in ("rk", "ro", "known_logits", "other_logits", "yk", "fold",
                                                        "oclass"))
    others = Others(ro, oclass, [str(c) for c in range(9)], [str(c) for c in oclass])
    crop = WHOLE_VIEWS + 1
    evidence, weight = CHOSEN[arch]
    both, sim_o = held_out_similarity(rk, fold, extra=ro[:, 0], views=(0, crop))
    sim_k = {0: both[:, 0], crop: both[:, 1]}
    e_k = {v: evidence_of(kl[:, v], evidence) for v in (0, crop)}
    e_o = np.stack([evidence_of(ol[f, :, 0], evidence) for f in range(4)])
    me, se, ms, ss = e_k[0].mean(), e_k[0].std(), sim_k[0].mean(), sim_k[0].std()
    fam_k = {v: (e_k[v] - me) / se + weight * (sim_k[v] - ms) / ss for v in (0, crop)}
    fam_o = (e_o - me) / se + weight * (sim_o - ms) / ss  # (4, 90)
    rejected_k = softmax(kl[:, 0]).max(axis=1) < uncertain_below
    classes = int(yk.max()) + 1
    rows = []
    for variant in ("none", "binary", "multi"):
        for l2 in ((0,) if variant == "none" else (1e-2, 1e-1)):
            held = []
            for c in range(9):
                if variant == "none":
                    held.append(None)
                    continue
                lab, k = (np.zeros_like(yk), 1) if variant == "binary" else (yk, classes)
                both, go = held_out_gate(rk, lab, k, fold, others, l2, leave_out=c, views=(0, crop))
                held.append((both[:, 0], go, both[:, 1]))
            log.info("gate %s l2=%g fitted", variant, l2)
            for a in ((0.0,) if variant == "none" else (0.5, 1.0, 2.0, 4.0, np.inf)):
                per = []
                for c in range(9):
                    if held[c] is None:
                        sk, sc, so = fam_k[0], fam_k[crop], fam_o
                    else:
                        zk, zo, zc = standardised(*held[c])
                        sk, so, sc = (z if np.isinf(a) else b + a * z
                                      for z, b in ((zk, fam_k[0]), (zo, fam_o), (zc, fam_k[crop])))
                    mine = oclass == c
                    other_scores = np.concatenate([so[f][mine] for f in range(4)])
                    threshold, _ = operating_point(sk, keep, rejected_k)
                    per.append({"auroc": auroc(sk, other_scores),
                                "known_rejected": float(nested_rejected(sk, fold, keep, rejected_k).mean()),
                                "other_flagged": float((other_scores < threshold).mean()),
                                "crop_rejected": float((sc < threshold).mean())})
                row = {"gate": variant, "l2": l2, "a": a,
                       **{k: round(float(np.mean([p[k] for p in per])), 4) for k in per[0]},
                       "flagged_worst": round(min(p["other_flagged"] for p in per), 3),
                       "per_class_flagged": [round(p["other_flagged"], 2) for p in per]}
                rows.append(row)
                log.info("%s", row)
    return rows


if __name__ == "__main__":
    main()

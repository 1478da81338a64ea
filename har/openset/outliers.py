"""What the open set learns from real clips of other actions, and how well that holds for actions it never saw.

The gate (:mod:`har.openset.gate`) is fitted on the known clips and on clips of other actions. Its weight in the
familiarity and its threshold come from scores that nothing which produced them saw:

* **known clips**, each scored by a gate fitted without its group fold (all the other actions in), beside the
  held-out evidence and similarity of the rest of the score (:func:`har.openset.score.fit_grouped`);
* **leave-other-class-out**: for each other-action class in turn and each group fold of the known clips, a gate
  fitted without that class and without that fold scores the class's clips and the fold's known clips. The class's
  clips are then what a visitor's unseen action is to the shipped gate: the share flagged at the threshold (set on
  the known clips' scores only, keeping 95 %) and the AUROC of known against them estimate how the score treats
  actions it has never seen (:func:`leave_other_class_out`).

Everything here works on raw descriptors (:func:`har.openset.score.describe`) ``(clips, views, C)``: every view of a
clip fits a gate, view 0 (the clip as served) is scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from har.openset.curves import auroc, roc
from har.openset.gate import L2, Gate, fit_gate
from har.openset.threshold import nested_rejected, operating_point

# The gate's weight beside the standardised evidence and similarity, per architecture, and its L2 penalty: each the
# best mean AUROC of {0.5, 1, 2, 4, the gate alone} x {1e-2, 1e-1} x {a known-vs-other gate, the six and other} by
# leave-other-class-out on the non-test groups (tools/openset_outliers.py, docs/notebook/openset.md)
GATE_CHOSEN = {"lrcn": (2.0, L2), "convlstm": (4.0, L2)}


@dataclass(frozen=True)
class Others:
    """Clips of other actions: raw descriptors of every view ``(m, views, C)``, each clip's class index and name."""

    raw: np.ndarray
    classes: np.ndarray  # (m,) int
    names: list[str]  # class names, by index
    groups: list[str]  # "<Class>/gNN" of each clip

    def without(self, c: int | None) -> np.ndarray:
        """Every view ``(k, C)`` of the clips not of class ``c`` (all of them for None)."""
        keep = np.ones(len(self.raw), bool) if c is None else self.classes != c
        return self.raw[keep].reshape(-1, self.raw.shape[-1])


def fitted(raw: np.ndarray, labels: np.ndarray, classes: int, inside: np.ndarray, others: np.ndarray,
           l2: float) -> Gate:
    """A gate fitted on every view of the known clips outside ``inside`` ``(n,)`` and on ``others`` ``(k, C)``."""
    keep = ~np.asarray(inside, bool)
    return fit_gate(raw[keep].reshape(-1, raw.shape[-1]), np.repeat(labels[keep], raw.shape[1]), classes, others,
                    l2=l2)


def held_out_gate(raw: np.ndarray, labels: np.ndarray, classes: int, fold: np.ndarray, others: Others,
                  l2: float = L2, leave_out: int | None = None, views: tuple[int, ...] = (0,)
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(known (n,), other (folds, m))``: each known clip as served scored by a gate fitted without its fold, and
    every other-action clip scored by each fold's gate; the gates see no clip of other class ``leave_out``. With
    ``views`` other than ``(0,)``, the known clips' scores are of those views, ``(n, len(views))``."""
    folds = np.unique(fold)
    known = np.zeros((len(raw), len(views)), np.float32)
    other = np.zeros((len(folds), len(others.raw)), np.float32)
    for i, f in enumerate(folds):
        gate = fitted(raw, labels, classes, fold == f, others.without(leave_out), l2)
        for j, v in enumerate(views):
            known[fold == f, j] = gate.score(raw[fold == f][:, v])
        other[i] = gate.score(others.raw[:, 0])
    return (known[:, 0] if views == (0,) else known), other


def standardised(known: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """``known`` and ``scores`` less the mean of ``known``, over its spread."""
    mean, std = float(np.mean(known)), max(float(np.std(known)), 1e-6)
    return tuple((np.asarray(s, np.float64) - mean) / std for s in (known, *scores))


def leave_other_class_out(base_known: np.ndarray, base_other: np.ndarray, raw: np.ndarray, labels: np.ndarray,
                          classes: int, fold: np.ndarray, others: Others, weight: float, l2: float, keep: float,
                          rejected: np.ndarray) -> dict:
    """The protocol's figures per other-action class, and the pooled scores for a ROC.

    ``base_known`` ``(n,)``: the rest of the familiarity of each known clip, held out (standardised evidence plus
    weighted similarity); ``base_other`` ``(folds, m)``: the same of every other-action clip by fold ``f``'s head and
    bank; ``rejected`` ``(n,)``: known clips the top-probability rule turns away already. For each class, the
    threshold keeps ``keep`` of the known clips' scores (as :func:`har.openset.score.operating_point`); the known
    clips rejected are counted on folds the threshold was not set on (:func:`har.openset.score.nested_rejected`)."""
    rows, pooled_known, pooled_other = [], [], []
    for c, name in enumerate(others.names):
        gk, go = held_out_gate(raw, labels, classes, fold, others, l2, leave_out=c)
        zk, zo = standardised(gk, go)
        known = base_known + weight * zk
        mine = others.classes == c
        other = np.concatenate([(base_other[i] + weight * zo[i])[mine] for i in range(len(zo))])
        threshold, _ = operating_point(known, keep, rejected)
        rows.append({"left_out": name, "clips": int(mine.sum()),
                     "groups": sorted({g for g, m in zip(others.groups, mine, strict=True) if m}),
                     "auroc": round(auroc(known, other), 4),
                     "flagged": round(float((other < threshold).mean()), 4),
                     "known_rejected": round(float(nested_rejected(known, fold, keep, rejected).mean()), 4)})
        pooled_known.append(known)
        pooled_other.append(other)
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("auroc", "flagged", "known_rejected")}
    return {"per_class": rows, "mean": mean, "known": np.concatenate(pooled_known),
            "other": np.concatenate(pooled_other)}


@dataclass(frozen=True)
class Gated:
    """A fitted gate and what it makes of a run's score: the gate, ``[mean, std, weight]`` of its held-out known
    scores, the known clips' held-out familiarity with it ``score`` ``(n,)``, its held-out gate scores of
    ``window_views`` ``(n, views)`` (standardised and weighted: to add), and ``info`` for ``config.json``."""

    gate: Gate
    combine: np.ndarray
    score: np.ndarray
    weight: float
    info: dict
    windows: np.ndarray | None = None


def gate_of(base_known: np.ndarray, raw: np.ndarray, labels: np.ndarray, classes: int, fold: np.ndarray,
            others: Others, base_other: np.ndarray, chosen: tuple[float, float] | None, keep: float,
            rejected: np.ndarray, window_views: tuple[int, ...] = ()) -> Gated:
    """The shipped gate (every view of every known clip and of every other-action clip), its scale from the known
    clips scored by gates without their fold, the familiarity it makes of them (``base_known`` plus its weighted,
    standardised score), and the leave-other-class-out figures (:func:`leave_other_class_out`) with the pooled ROC."""
    weight, l2 = chosen or (1.0, L2)
    scored, _ = held_out_gate(raw, labels, classes, fold, others, l2, views=(0, *window_views))
    held = scored if not window_views else scored[:, 0]
    combine = np.array([held.mean(), max(float(held.std()), 1e-6), weight])
    windows = weight * (scored[:, 1:] - combine[0]) / combine[1] if window_views else None
    gate = fit_gate(raw.reshape(-1, raw.shape[-1]), np.repeat(labels, raw.shape[1]), classes,
                    others.without(None), l2=l2)
    gate = Gate(gate.kernel, gate.bias, others.without(None).astype(np.float16))  # for teaching (Gate.taught)
    loco = leave_other_class_out(base_known, base_other, raw, labels, classes, fold, others, weight, l2, keep,
                                 rejected)
    info = {"gate": {"weight": weight, "l2": l2, "inputs": int(raw.shape[-1])},
            "others": {"classes": list(others.names), "clips": len(others.raw),
                       "groups": sorted(set(others.groups))},
            "leave_other_class_out": {"per_class": loco["per_class"], "mean": loco["mean"],
                                      "roc": roc(loco["known"], loco["other"], points=51)}}
    return Gated(gate, combine, base_known + weight * (held - combine[0]) / combine[1], weight, info, windows)

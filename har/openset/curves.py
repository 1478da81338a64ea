"""How well a score tells known inputs from unknown ones: the area under the ROC curve and the curve itself."""

from __future__ import annotations

import numpy as np


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Probability that a known input scores higher than an unknown one (ties count half): the area under the ROC
    curve of flagging low scores as unknown."""
    known, unknown = np.asarray(known, float), np.asarray(unknown, float)
    if not len(known) or not len(unknown):
        return float("nan")
    greater = (known[:, None] > unknown[None, :]).mean()
    ties = (known[:, None] == unknown[None, :]).mean()
    return float(greater + 0.5 * ties)


def roc(known: np.ndarray, unknown: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """ROC of "score under t means unknown" over thresholds t: the share of knowns flagged (false positive rate)
    and of unknowns flagged (true positive rate), thinned to about ``points`` points."""
    known, unknown = np.sort(np.asarray(known, float)), np.sort(np.asarray(unknown, float))
    ts = np.unique(np.concatenate([known, unknown]))
    if len(ts) > points:
        ts = np.unique(np.quantile(ts, np.linspace(0, 1, points)))
    ts = np.append(ts, np.inf)  # after thinning: a quantile next to an infinite value is NaN
    fpr = np.searchsorted(known, ts, side="left") / max(len(known), 1)
    tpr = np.searchsorted(unknown, ts, side="left") / max(len(unknown), 1)
    return {"fpr": [0.0, *np.round(fpr, 4).tolist()], "tpr": [0.0, *np.round(tpr, 4).tolist()]}

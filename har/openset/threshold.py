"""Where the open set draws its line: thresholds from the familiarity of known clips held out, and how they hold
on groups they were not set on (:mod:`har.openset.score` fits with them; :mod:`har.openset.outliers` measures with
them)."""

from __future__ import annotations

import math

import numpy as np


def operating_point(known: np.ndarray, keep: float, rejected: np.ndarray | None = None) -> tuple[float, float]:
    """``(threshold, tau)`` from the familiarity of known clips: the threshold keeps ``keep`` of them, counting as
    lost those the top-probability rule already rejects (``rejected``); tau is the spread that puts the unknown
    probability of the median known clip at 5 %."""
    known = np.asarray(known, np.float64)
    rejected = np.zeros(len(known), bool) if rejected is None else np.asarray(rejected, bool)
    left = 1.0 - keep - float(rejected.mean())  # share still to reject by familiarity
    rest = known[~rejected]
    threshold = float(np.quantile(rest, left / (1.0 - rejected.mean()))) if left > 0 and len(rest) else \
        float(known.min()) - 1e-6
    return threshold, max(float(np.median(known)) - threshold, 1e-4) / math.log(0.95 / 0.05)


def nested_rejected(score: np.ndarray, fold: np.ndarray, keep: float, rejected: np.ndarray) -> np.ndarray:
    """Which held-out known clips ``(n,)`` a threshold set on the other folds' scores (keeping ``keep`` of them)
    rejects, or the top-probability rule does: the operating point's behaviour on groups it was not set on."""
    lost = np.asarray(rejected, bool).copy()
    for f in np.unique(fold):
        inside = fold == f
        threshold, _ = operating_point(score[~inside], keep, rejected[~inside])
        lost[inside] |= score[inside] < threshold
    return lost


def grouped_operating_point(score: np.ndarray, fold: np.ndarray, keep: float, rejected: np.ndarray | None = None,
                            step: float = 0.0025) -> tuple[float, float, float]:
    """``(threshold, tau, share kept in sample)``: :func:`operating_point` on the held-out scores, with the share
    kept raised from ``keep`` in ``step`` until a threshold set on the other folds rejects at most ``1 - keep`` of
    each fold's clips, pooled (:func:`nested_rejected`). Groups differ, so a 5 % quantile set on some groups rejects
    more than 5 % of new ones (6.4 % for the ConvLSTM's non-test folds, docs/notebook/openset.md)."""
    rejected = np.zeros(len(score), bool) if rejected is None else np.asarray(rejected, bool)
    share = keep
    if len(np.unique(fold)) > 1:
        most = 1.0 - float(rejected.mean())  # keeping more leaves nothing to the familiarity
        while share + step <= most + 1e-9 and nested_rejected(score, fold, share, rejected).mean() > 1.0 - keep + 1e-9:
            share = round(share + step, 6)
    return (*operating_point(score, share, rejected), share)

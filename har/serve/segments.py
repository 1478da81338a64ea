"""From window probabilities to segments: probabilities per step of time, then the Viterbi decoder.

A timeline's windows overlap; each step of time (``step_s`` seconds: the hop, at most a second) averages the
windows that cover it, weighted towards windows centred on it (:func:`per_step`; :func:`per_second` is the same on
whole seconds, the view the JSON has always had). :func:`decode` then finds the most probable sequence of states
over the steps: the K classes and one more, :data:`har.serve.results.UNCERTAIN` ("none of the known actions"), where

* a step's score for class ``k`` is ``log(p_k) + log(1 - u + FLOOR)`` and for the unknown state
  ``log(u + FLOOR)``: ``u`` in [0, 1] is how likely the step shows none of the known actions. Today ``u`` is 1
  where the top probability is under the model's ``uncertain_below`` and 0 elsewhere (:func:`unknown_of`); an
  open-set score can pass its own ``u`` per step instead: :meth:`har.openset.score.Familiarity.unknown_probability` of
  each window's familiarity, averaged per step through :func:`per_step` like probabilities.
  :data:`FLOOR` says how little a 0/1 ``u`` is trusted: overruling an unsure step costs about
  ``log((1 + FLOOR) / (FLOOR * top))`` (1.9 for a top probability of 0.45), so with a penalty of 2 an unsure
  stretch of such steps stands from two steps between two actions, from three inside one (1 and 1.5 s at a 0.5 s
  hop). A calibrated ``u`` may want a smaller floor (``decode(..., floor=)``).
* every change of state costs ``penalty`` (log-space). A run whose steps favour it by less than the two changes
  it needs is absorbed; with ``penalty`` 0 every step keeps its own best state.

Boundaries fall on step times, so with a 0.5 s hop a cut is placed to half a second. :func:`merge_short_runs` is
a simpler smoothing (per-second labels, runs under :data:`MIN_SEGMENT_S` merged into a neighbour), kept as the
benchmark's baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from har.serve.results import UNCERTAIN, Segment

FLOOR = 0.5  # added to u and 1 - u (the module's doc); chosen with the penalty on validation montages
MIN_SEGMENT_S = 2.0  # the baseline smoothing: a run of fewer seconds than this is merged into a neighbour


def per_step(starts_s: np.ndarray, length_s: float, window_values: np.ndarray, duration_s: float,
             step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """``(t (T,), values (T, columns))``: step ``i`` covers ``[i * step_s, (i + 1) * step_s)`` (the last one may be
    partial) and averages the windows covering its centre, weighted by how close each window's centre is
    (triangular: 1 at the centre, 0 at the window's edges). ``window_values``: ``(windows, columns)``, e.g. class
    probabilities."""
    assert step_s > 0 and duration_s > 0, (step_s, duration_s)
    n = max(1, int(math.ceil(duration_s / step_s - 1e-6)))
    t = np.arange(n, dtype=np.float64) * step_s
    centres = (t + np.minimum(t + step_s, duration_s)) / 2
    dist = np.abs(centres[:, None] - (starts_s + length_s / 2)[None, :])  # (T, windows)
    half = length_s / 2
    w = np.where(dist < half, 1.0 - dist / half + 1e-3, 0.0)
    orphan = w.sum(axis=1) == 0  # a hop longer than the window leaves gaps: take the nearest window
    w[orphan, dist[orphan].argmin(axis=1)] = 1.0
    values = (w @ window_values) / w.sum(axis=1, keepdims=True)
    return t, values.astype(np.float32)


def per_second(starts_s: np.ndarray, length_s: float, window_probs: np.ndarray, duration_s: float):
    """``(seconds (S,), probs (S, classes))``: :func:`per_step` on whole seconds."""
    return per_step(starts_s, length_s, window_probs, duration_s, 1.0)


def unknown_of(probs: np.ndarray, uncertain_below: float) -> np.ndarray:
    """``(T,)`` u of each step without an open-set score: 1 where the top probability is under the threshold."""
    return (probs.max(axis=1) < uncertain_below).astype(np.float32)


def viterbi(scores: np.ndarray, penalty: float) -> np.ndarray:
    """``(T,)`` the state sequence of highest total score: ``scores`` ``(T, states)`` per step (log-space), minus
    ``penalty`` per change of state. Staying wins ties."""
    assert scores.ndim == 2 and penalty >= 0, (scores.shape, penalty)
    steps, states = scores.shape
    total = scores[0].astype(np.float64)
    back = np.empty((steps, states), np.int64)  # back[i, s]: the state at i - 1 on the best path into s at i
    stay = np.arange(states)
    for i in range(1, steps):
        best = int(total.argmax())
        switched = total[best] - penalty
        back[i] = np.where(total >= switched, stay, best)
        total = np.maximum(total, switched) + scores[i]
    path = np.empty(steps, np.int64)
    path[-1] = int(total.argmax())
    for i in range(steps - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def decode(probs: np.ndarray, step_s: float, duration_s: float, classes: Sequence[str], uncertain_below: float,
           penalty: float, unknown: np.ndarray | None = None, floor: float = FLOOR) -> tuple[Segment, ...]:
    """Segments of the most probable states over the steps (the module's doc): ``probs`` ``(T, classes)`` per
    step of ``step_s`` seconds, ``unknown`` ``(T,)`` u per step (default :func:`unknown_of`)."""
    u = unknown_of(probs, uncertain_below) if unknown is None else np.asarray(unknown, np.float64)
    assert u.shape == probs.shape[:1] and np.all((u >= 0) & (u <= 1)), (u.shape, probs.shape)
    assert floor > 0, floor
    known = np.log(np.maximum(probs, 1e-6)) + np.log(1.0 - u + floor)[:, None]
    scores = np.concatenate([known, np.log(u + floor)[:, None]], axis=1)  # (T, K + 1); state K: unknown
    path = viterbi(scores, penalty)
    return _segments(np.where(path == len(classes), -1, path), probs, step_s, duration_s, classes)


def merge_short_runs(probs: np.ndarray, duration_s: float, classes: Sequence[str], uncertain_below: float,
                     min_s: float = MIN_SEGMENT_S) -> tuple[Segment, ...]:
    """The baseline: runs of equal per-second labels (a class, or UNCERTAIN under the threshold); runs shorter
    than ``min_s`` join the neighbour that explains them better, shortest first."""
    conf = probs.max(axis=1)
    labels = np.where(conf >= uncertain_below, probs.argmax(axis=1), -1)  # -1: uncertain
    runs = _runs(labels)
    while len(runs) > 1:
        i = min(range(len(runs)), key=lambda r: (runs[r][2] - runs[r][1], r))
        _, a, b = runs[i]
        if b - a >= min_s:
            break
        near = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        j = max(near, key=lambda j: _support(probs, runs[j][0], a, b))
        labels[a:b] = runs[j][0]
        runs = _runs(labels)
    return _segments(labels, probs, 1.0, duration_s, classes)


def _support(probs: np.ndarray, label: int, a: int, b: int) -> float:
    """How well ``label`` (-1: uncertain) explains steps a..b-1: its mean probability (1 - the top's)."""
    return float((1.0 - probs[a:b].max(axis=1)).mean()) if label < 0 else float(probs[a:b, label].mean())


def _segments(labels: np.ndarray, probs: np.ndarray, step_s: float, duration_s: float,
              classes: Sequence[str]) -> tuple[Segment, ...]:
    """One segment per run of equal step labels (-1: UNCERTAIN); its score is the label's mean probability (the
    top probability's when UNCERTAIN)."""
    out = []
    for label, a, b in _runs(labels):
        name = UNCERTAIN if label < 0 else classes[label]
        score = float(probs[a:b].max(axis=1).mean()) if label < 0 else _support(probs, label, a, b)
        out.append(Segment(round(a * step_s, 6), min(round(b * step_s, 6), duration_s), name, score))
    return tuple(out)


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """``[(label, start, end), ...]`` of equal consecutive values."""
    cuts = np.flatnonzero(np.diff(labels)) + 1
    bounds = [0, *cuts.tolist(), len(labels)]
    return [(int(labels[a]), a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

"""Held-out answers of a run's known clips: what the open-set score's scales and threshold are set on.

A head answers the clips it was trained on more confidently than any clip it has not seen, so an operating point
set on them would reject far more than its share of new clips. Here the training and validation groups of a frozen-
encoder run are dealt into folds (:func:`har.openset.score.group_folds`); for each fold a fresh temporal head is trained
on the other folds' cached features with the run's own recipe (optimizer, schedule, augmented views, and as many
epochs as the shipped model was trained for), and gives the logits of the fold's clips as served. Every known clip
then has the logits of a model that never saw its group, trained as the shipped model was: 4 heads, about 1 minute
for the LRCN on this 2-core CPU, 6 for the ConvLSTM.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from har.data.features import CROP_VIEWS, VIEWS
from har.data.trainsets import train_dataset
from har.openset.score import CHOSEN, FOLDS, Familiarity, describe, fit_grouped, group_folds
from har.train.schedule import compile_for, scheduler

log = logging.getLogger(__name__)


def train_head(opts, x: np.ndarray, y: np.ndarray, classes: int, epochs: int, seed: int):
    """A fresh temporal head of ``opts.arch`` trained on cached features ``x`` ``(n, views, frames, ...)`` for
    ``epochs`` epochs of ``opts``' schedule, from ``seed``."""
    import keras

    from har.models import builders as models

    keras.utils.set_random_seed(seed)
    head = compile_for(models.temporal_head(opts.arch, tuple(x.shape[2:]), classes), opts)
    head.fit(train_dataset(opts, x, y, classes), epochs=epochs, verbose=0,
             callbacks=[scheduler(opts)])
    return head


def logits_of(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The logits ``(n, classes)`` of ``model`` (which ends in the softmax "probs") on inputs ``x``."""
    from har.serve.surgery import with_logits

    return np.asarray(with_logits(model).predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)[1])


def held_out_logits(opts, x: np.ndarray, y: np.ndarray, groups: list[str], classes: int, epochs: int,
                    folds: int = FOLDS, extra: np.ndarray | None = None, views: tuple[int, ...] = (0,)):
    """Logits ``(n, classes)`` of every clip as served (view 0 of ``x``), each from a head trained on the other
    folds' clips (:func:`train_head`). With ``extra`` clips' features ``(m, frames, ...)`` (as served): also their
    logits by the head of each fold that holds clips, ``(logits, (folds with clips, m, classes))``. With ``views``
    other than ``(0,)``: the logits of those views of each clip, ``(n, len(views), classes)``."""
    fold = group_folds(groups, folds)
    out = np.zeros((len(x), len(views), classes), np.float32)
    present = list(np.unique(fold))
    other = np.zeros((len(present), 0 if extra is None else len(extra), classes), np.float32)
    for f in range(folds):
        inside = fold == f
        if inside.all() or not inside.any():
            continue
        started = time.perf_counter()
        head = train_head(opts, x[~inside], y[~inside], classes, epochs, opts.seed + 1 + f)
        inner = x[inside][:, list(views)]
        out[inside] = logits_of(head, inner.reshape(-1, *x.shape[2:])).reshape(len(inner), len(views), classes)
        if extra is not None:
            other[present.index(f)] = logits_of(head, extra)
        log.info("open set: held-out head %d of %d (%d clips) in %.0f s", f + 1, folds, int(inside.sum()),
                 time.perf_counter() - started)
    out = out[:, 0] if views == (0,) else out
    return out if extra is None else (out, other)


def fit_familiarity(opts, x: np.ndarray, y: np.ndarray, groups: list[str], n_train: int, classes: int, epochs: int,
                    uncertain_below: float, others=None) -> Familiarity:
    """The open-set score a run ships, from its training clips followed by its validation clips (cached features
    ``x`` ``(n, views, frames, ...)``, labels ``y`` ``(n,)``, ``groups``; the first ``n_train`` are the training
    ones): held-out logits of fold heads (:func:`held_out_logits`), the architecture's evidence and weight
    (:data:`har.openset.score.CHOSEN`), :func:`har.openset.score.fit_grouped`. With ``others``
    (:class:`OtherClips`: clips of other actions), the score has a gate learned from them
    (:mod:`har.openset.outliers`, weight and penalty :data:`har.openset.outliers.GATE_CHOSEN`)."""
    from har.openset.outliers import GATE_CHOSEN, Others

    evidence, weight = CHOSEN.get(opts.arch, ("energy", 1.0))
    if others is None:
        held = held_out_logits(opts, x, y, groups, classes, epochs)
        return fit_grouped(x[:n_train], groups[:n_train], x[n_train:], groups[n_train:], held_logits=held,
                           uncertain_below=uncertain_below, evidence=evidence, weight=weight)
    views = (0, *range(VIEWS - CROP_VIEWS, VIEWS))  # as served, and the temporal crops: what a timeline window is
    held, other_logits = held_out_logits(opts, x, y, groups, classes, epochs, extra=others.x[:, 0], views=views)
    raw = describe(others.x.reshape(-1, *others.x.shape[2:])).reshape(len(others.x), others.x.shape[1], -1)
    return fit_grouped(x[:n_train], groups[:n_train], x[n_train:], groups[n_train:], held_logits=held[:, 0],
                       held_window_logits=held[:, 1:], window_views=views[1:],
                       uncertain_below=uncertain_below, evidence=evidence, weight=weight, labels=y,
                       others=Others(raw, others.labels, list(others.classes), others.groups),
                       others_logits=other_logits, gate=GATE_CHOSEN.get(opts.arch))


@dataclass(frozen=True)
class OtherClips:
    """Clips of actions none of the known ones, as training caches them: features ``(m, views, frames, ...)``, each
    clip's class index, the class names and each clip's group (``"<Class>/gNN"``)."""

    x: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    groups: list[str]

    @classmethod
    def load(cls, folder, model, sampling, min_window_s: float, cache) -> OtherClips:
        """Every clip of a folder-per-class dataset of other actions, through ``model``'s frozen encoder (cached)."""
        from har.data.dataset import index_dataset
        from har.data.features import features_of

        index = index_dataset(folder)
        x = features_of(index.clips, model, sampling, min_window_s, cache, desc="other-action features")
        return cls(x, index.labels(), index.classes, [c.group for c in index.clips])

"""Training checkpoints: the per-epoch log, the resume state and the running weight average of a run.

While a run goes, ``<out>/_resume/`` holds the last epoch's full model with optimizer state (``last.keras``), the
best validation epoch's weights (``best.weights.h5``), the running average of the last epochs' weights when asked
(``average.npz``), and ``state.json`` (epochs done, whether early stopping ended the run), each replaced
atomically after every epoch; ``history.csv`` beside the model gets the epoch's row. A kill at any point leaves a
consistent (older or newer) state, from which ``train --resume`` continues (:mod:`har.train.fit`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from har.modeldir import HISTORY_FILE

RESUME_DIR = "_resume"
LAST_FILE = "last.keras"
STATE_FILE = "state.json"
BEST_WEIGHTS = "best.weights.h5"
AVG_WEIGHTS = "average.npz"
REFIT_DIR = "refit"  # inside _resume/: the refit phase's own resume state
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")


def read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """The columns of HISTORY_FIELDS the rows have (a refit phase has no validation columns)."""
    fields = [k for k in HISTORY_FIELDS if not rows or k in rows[0]]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (int(r[k]) if k == "epoch" else f"{r[k]:.6g}") for k in fields})
    os.replace(tmp, path)


class EpochLog(keras.callbacks.Callback):
    """Per epoch, in this order: best weights if val_loss improved, the full last model (for --resume), the
    history row, then the resume state. A kill at any point leaves a consistent (older or newer) state."""

    def __init__(self, out: Path, prior: list[dict[str, float]], average_from: int | None = None,
                 resume: Path | None = None, history: str = HISTORY_FILE):
        super().__init__()
        self.out = out
        self.resume = resume or out / RESUME_DIR
        self.history = history
        self.rows = list(prior)
        self.best = min((r["val_loss"] for r in prior if "val_loss" in r), default=math.inf)
        self.average_from = average_from  # epochs after this one (1-based count) enter the running average

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        dt = time.perf_counter() - self.t0
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, "loss": logs["loss"], "accuracy": logs["accuracy"]}
        if "val_loss" in logs:  # not in a refit phase
            row |= {"val_loss": logs["val_loss"], "val_accuracy": logs["val_accuracy"]}
        row |= {"learning_rate": lr, "epoch_seconds": dt}
        resume = self.resume
        if "val_loss" in row and row["val_loss"] < self.best:
            self.best = row["val_loss"]
            self.model.save_weights(resume / f"tmp.{BEST_WEIGHTS}")
            os.replace(resume / f"tmp.{BEST_WEIGHTS}", resume / BEST_WEIGHTS)
        if self.average_from is not None and epoch + 1 > self.average_from:
            update_average(self.model, resume)
        self.model.save(resume / f"tmp.{LAST_FILE}")
        os.replace(resume / f"tmp.{LAST_FILE}", resume / LAST_FILE)
        self.rows.append(row)
        write_history(self.out / self.history, self.rows)
        # EarlyStopping runs before this callback, so stop_training already says whether the run is over.
        # Training time is the sum of history.csv's epoch_seconds: not kept twice here.
        state = {"epoch": epoch + 1, "stopped": bool(self.model.stop_training)}
        (resume / f"tmp.{STATE_FILE}").write_text(json.dumps(state))
        os.replace(resume / f"tmp.{STATE_FILE}", resume / STATE_FILE)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """keras EarlyStopping whose wait counter and best value are replayed from the epochs of an earlier run."""

    def __init__(self, prior: list[float], **kwargs):
        super().__init__(**kwargs)
        self.prior = prior

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.monitor_op is None:
            self._set_monitor_op()
        for epoch, value in enumerate(self.prior):  # the same steps as EarlyStopping.on_epoch_end
            if epoch < self.start_from_epoch:
                continue
            self.wait += 1
            if self._is_improvement(value, self.best):
                self.best, self.best_epoch, self.wait = value, epoch, 0


def avg_count(resume: Path) -> int:
    path = resume / AVG_WEIGHTS
    if not path.is_file():
        return 0
    with np.load(path) as f:
        return int(f["count"])


def load_average(resume: Path) -> list[np.ndarray]:
    with np.load(resume / AVG_WEIGHTS) as f:
        return [f[f"w{i}"] for i in range(len(f.files) - 1)]


def update_average(model: keras.Model, resume: Path) -> None:
    """Fold the model's current weights into the running average kept in ``resume`` (weights and count in one
    file, so a resumed run continues it). Written before the epoch's resume state: a kill re-runs the epoch, and
    the epoch enters the average once (the file is replaced only after the epoch is over)."""
    count = avg_count(resume)
    weights = [np.asarray(w, np.float64) for w in model.get_weights()]
    if count:
        weights = [a + (w - a) / (count + 1) for a, w in zip(load_average(resume), weights, strict=True)]
    tmp = resume / f"tmp.{AVG_WEIGHTS}"
    with open(tmp, "wb") as f:
        np.savez(f, count=count + 1, **{f"w{i}": w for i, w in enumerate(weights)})
    os.replace(tmp, resume / AVG_WEIGHTS)


def recompute_batch_norm(model: keras.Model, clips: np.ndarray, batch_size: int = 16) -> None:
    """Set every batch normalisation's moving mean and variance to the statistics of its input over ``clips``
    (uint8 ``(n, frames, H, W, 3)``), all positions and frames pooled: averaged weights need statistics of their
    own. Layer by layer in graph order, each seeing its predecessors' new statistics; inference mode throughout.
    A ``TimeDistributed`` batch normalisation (our LRCN) is the same layer on every frame: its statistics pool
    the frames."""
    targets = []
    for layer in model.layers:  # a functional model's layers come in graph order
        inner = layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer
        if isinstance(inner, keras.layers.BatchNormalization):
            targets.append((layer, inner))
    for outer, bn in targets:
        probe = keras.Model(model.input, outer.input)
        total = total_sq = None
        count = 0
        for start in range(0, len(clips), batch_size):
            x = np.asarray(probe(clips[start : start + batch_size], training=False), np.float64)
            x = x.reshape(-1, x.shape[-1])  # every position of every frame of every clip, per channel
            total = x.sum(axis=0) if total is None else total + x.sum(axis=0)
            total_sq = (x * x).sum(axis=0) if total_sq is None else total_sq + (x * x).sum(axis=0)
            count += len(x)
        mean = total / count
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(np.maximum(total_sq / count - mean * mean, 0.0).astype(np.float32))

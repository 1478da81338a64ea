"""Fit a model on a folder-per-class dataset with a group-aware split, and write a self-describing model dir.

``python -m har train --arch lrcn --data DATA --out models/lrcn`` writes ``model.keras`` (best validation loss),
``config.json``, ``history.csv`` (per epoch: loss, accuracy, val_loss, val_accuracy, learning_rate,
epoch_seconds) and ``metrics.json`` (the test split, groups never seen in training or validation).

With ``--refit``, a second phase follows the validated one: a fresh model, the same seed and learning-rate
schedule, trained on the training and validation groups together for as many epochs as the validated phase's best
epoch; that model ships (``refit_history.csv`` logs it; ``history.csv`` keeps the validated phase's curves). The
test groups stay unseen either way.

A run keeps ``_resume/`` (last epoch's full model with optimizer state) while it runs; ``--resume`` continues a
killed run from its last finished epoch, with early stopping and best-checkpoint state rebuilt from history.csv.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from har.config import ModelConfig, Sampling
from har.errors import HarError
from har.modeldir import HISTORY_FILE, METRICS_FILE, MODEL_FILE, REFIT_HISTORY_FILE

log = logging.getLogger(__name__)

RESUME_DIR = "_resume"
LAST_FILE = "last.keras"
STATE_FILE = "state.json"
BEST_WEIGHTS = "best.weights.h5"
AVG_WEIGHTS = "average.npz"
REFIT_DIR = "refit"  # inside _resume/: the refit phase's own resume state
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")


@dataclass(frozen=True)
class TrainOptions:
    arch: str  # "lrcn" | "convlstm"
    data: Path  # folder per class
    out: Path  # model directory to write
    preset: str = "default"  # "default" | "tutorial"
    epochs: int = 40  # length of the cosine schedule; early stopping may end sooner
    batch_size: int = 16
    lr: float = 1e-3  # peak learning rate (cosine decay after a short warm-up)
    warmup_epochs: int = 2
    patience: int = 10  # epochs without a better val_loss before stopping ...
    # ... counted only from this epoch on: while the learning rate is still high, validation swings are noise
    stop_from_epoch: int = 20
    weight_decay: float = 0.05  # AdamW, decoupled
    mixup: float = 0.0  # Beta(a, a) mixup of clip pairs within a batch (0: off)
    norm: str = "batch"  # our presets' normalisation: "batch" | "group"
    # Ship the average of the weights of the last N epochs (stochastic weight averaging, batch-norm statistics
    # recomputed on one augmented pass over the training clips) instead of the best-validation epoch; 0: the best.
    average_last: int = 0
    # After the validated phase, train a fresh model on training + validation groups for the best epoch's count
    # of epochs (same seed, same schedule) and ship it.
    refit: bool = False
    seed: int = 0
    validation: float = 0.15  # fraction of each class's groups
    test: float = 0.2
    frames: int = 20
    size: int = 64
    strategy: str = "auto"  # "auto" (one device: GPU if any), "mirrored" (all local GPUs), "multiworker", "cpu"
    resume: bool = False
    cache_dir: Path | None = None
    max_clips: int | None = None  # per split, for smoke tests only


def lr_at(epoch: int, opts: TrainOptions) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak over ``opts.epochs``: a pure function of the epoch,
    so a resumed run follows the same schedule."""
    if epoch < opts.warmup_epochs:
        return opts.lr * (epoch + 1) / (opts.warmup_epochs + 1)
    progress = (epoch - opts.warmup_epochs) / max(opts.epochs - opts.warmup_epochs, 1)
    return opts.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def versions() -> dict[str, str]:
    import cv2
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }


def pick_strategy(name: str):
    """A ``tf.distribute`` strategy: GPUs when TensorFlow sees them, else the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if name == "multiworker":  # one process per machine, the cluster described by TF_CONFIG (see README)
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        if not gpus:
            log.warning("--strategy mirrored: TensorFlow sees no GPU; MirroredStrategy runs on the CPU")
        return tf.distribute.MirroredStrategy()
    if name == "cpu" or not gpus:
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    return tf.distribute.OneDeviceStrategy("/gpu:0")


def _read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """The columns of HISTORY_FIELDS the rows have (a refit phase has no validation columns)."""
    fields = [k for k in HISTORY_FIELDS if not rows or k in rows[0]]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (int(r[k]) if k == "epoch" else f"{r[k]:.6g}") for k in fields})
    os.replace(tmp, path)


def train(opts: TrainOptions) -> ModelConfig:
    """Run one training; returns the config written next to the model. Raises :class:`HarError` on bad input."""
    import tensorflow as tf

    from har import augment, models
    from har.data import class_counts, clip_durations, clips_of, index_dataset, load_frames, make_dataset, split_groups
    from har.evaluate import metrics, predict_frames

    keras.utils.set_random_seed(opts.seed)  # the one seed: python, numpy, tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        tf.config.experimental.enable_op_determinism()  # reproducible on CPU given the seed

    if not 0 <= opts.average_last <= opts.epochs:
        raise HarError(f"--average-last {opts.average_last}: it must be between 0 and the number of epochs "
                       f"({opts.epochs}).")
    if opts.refit and opts.average_last:
        raise HarError("--refit and --average-last do not go together: the refit phase ships its last epoch.")
    out = Path(opts.out)
    resume_dir = out / RESUME_DIR
    if opts.resume and not (resume_dir / STATE_FILE).is_file():
        raise HarError(f"Nothing to resume in {out}: no unfinished run there (no {RESUME_DIR}/{STATE_FILE}).")
    if not opts.resume and resume_dir.exists():
        shutil.rmtree(resume_dir)  # a fresh run: forget an earlier unfinished one
    if not opts.resume:
        (out / REFIT_HISTORY_FILE).unlink(missing_ok=True)  # an earlier run's refit log would mislabel this one
    out.mkdir(parents=True, exist_ok=True)
    resume_dir.mkdir(exist_ok=True)

    index = index_dataset(opts.data)
    split = split_groups(index, seed=opts.seed, validation=opts.validation, test=opts.test)
    parts = {s: clips_of(index, g) for s, g in split.items()}
    if opts.max_clips:
        rng = np.random.default_rng(opts.seed)
        parts = {s: [c[i] for i in sorted(rng.permutation(len(c))[: opts.max_clips])] for s, c in parts.items()}
    for s, clips in parts.items():
        if not clips:
            raise HarError(f"The {s} split is empty: the dataset needs at least three groups per class.")
        log.info("%s: %d clips %s", s, len(clips), class_counts(index, clips))

    # Cached frames: train/validation dense (DENSE candidates per segment, for position jitter), test as served.
    dense = Sampling(opts.frames * augment.DENSE, opts.size)
    x_train = load_frames(parts["train"], dense, opts.cache_dir, desc="train frames")
    x_val = load_frames(parts["validation"], dense, opts.cache_dir, desc="validation frames")
    y_train, y_val = index.labels(parts["train"]), index.labels(parts["validation"])
    n = opts.frames
    ds_train = make_dataset(
        x_train, y_train, opts.batch_size, shuffle_seed=opts.seed, map_fn=lambda x, s: augment.augment_clip(x, s, n)
    )
    ds_val = make_dataset(x_val, y_val, opts.batch_size, map_fn=lambda x: augment.centre(x, n))
    k = len(index.classes)
    if opts.mixup > 0:  # soft labels: one-hot everywhere, mixed in training batches
        ds_train = augment.mixup(ds_train, k, opts.mixup, opts.seed)
        ds_val = ds_val.map(lambda x, y: (x, tf.one_hot(y, k)))

    strategy = pick_strategy(opts.strategy)
    history_path = out / HISTORY_FILE
    state = json.loads((resume_dir / STATE_FILE).read_text()) if opts.resume else {"epoch": 0}
    prior = _read_history(history_path)[: state["epoch"]] if opts.resume else []
    with strategy.scope():
        if opts.resume:
            model = keras.saving.load_model(resume_dir / LAST_FILE, safe_mode=True)
            log.info("resuming %s after epoch %d", out, state["epoch"])
        else:
            model = _compiled(opts, k)

    # Averaging the last epochs runs the schedule to its end: no early stopping then.
    stopping = [] if opts.average_last else [
        _ResumableEarlyStopping([r["val_loss"] for r in prior], monitor="val_loss", mode="min", patience=opts.patience,
                                start_from_epoch=opts.stop_from_epoch)]
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch: lr_at(epoch, opts)),
        *stopping,
        _EpochLog(out, prior, average_from=opts.epochs - opts.average_last if opts.average_last else None),
    ]
    verbose = 1 if os.isatty(2) else 2
    started = time.perf_counter()
    if state["epoch"] < opts.epochs and not state.get("stopped"):
        model.fit(ds_train, validation_data=ds_val, epochs=opts.epochs, initial_epoch=state["epoch"],
                  callbacks=callbacks, verbose=verbose)
    rows = _read_history(history_path)
    train_seconds = sum(r["epoch_seconds"] for r in rows)
    best = int(np.argmin([r["val_loss"] for r in rows]))

    refit = None
    if opts.refit:  # phase 2: training + validation groups, as many epochs as the validated phase's best
        del model
        x_all, y_all = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
        ds_all = make_dataset(x_all, y_all, opts.batch_size, shuffle_seed=opts.seed,
                              map_fn=lambda x, s: augment.augment_clip(x, s, n))
        if opts.mixup > 0:
            ds_all = augment.mixup(ds_all, k, opts.mixup, opts.seed)
        refit_rows = _refit(opts, strategy, ds_all, k, best + 1, verbose)
        refit = {"epochs": len(refit_rows), "clips": len(x_all),
                 "seconds": round(sum(r["epoch_seconds"] for r in refit_rows), 1)}
        train_seconds += refit["seconds"]

    # The shipped model in a fresh, uncompiled model (no optimizer state to ship): the best epoch's weights, or
    # the average of the last epochs' with batch-norm statistics recomputed on the (augmented) training clips.
    final = models.build(opts.arch, opts.preset, len(index.classes), opts.frames, opts.size, opts.norm)
    averaged = None
    if refit is not None:
        final.set_weights(keras.saving.load_model(resume_dir / REFIT_DIR / LAST_FILE, safe_mode=True).get_weights())
    elif opts.average_last and (resume_dir / AVG_WEIGHTS).is_file():
        final.set_weights([w.astype(v.dtype) for w, v in zip(_load_average(resume_dir), final.get_weights(),
                                                              strict=True)])
        # one augmented pass over the training clips, as the statistics were gathered in training
        recompute_batch_norm(final, np.stack([
            augment.augment_clip(tf.constant(x), tf.constant([opts.seed, i], tf.int64), n).numpy()
            for i, x in enumerate(x_train)]))
        p_val = predict_frames(final, np.stack([augment.centre(x, n).numpy() for x in x_val]))
        averaged = {
            "epochs": [len(rows) - _avg_count(resume_dir) + 1, len(rows)],
            "val_loss": float(-np.mean(np.log(np.maximum(p_val[np.arange(len(y_val)), y_val], 1e-7)))),
            "val_accuracy": float(np.mean(p_val.argmax(axis=1) == y_val)),
        }
        log.info("shipping the average of epochs %d-%d: val_loss %.4f, val_accuracy %.4f (best epoch %d: %.4f)",
                 *averaged["epochs"], averaged["val_loss"], averaged["val_accuracy"], best + 1, rows[best]["val_loss"])
    else:
        final.load_weights(resume_dir / BEST_WEIGHTS)
    final.save(out / MODEL_FILE)

    x_test = load_frames(parts["test"], Sampling(opts.frames, opts.size), opts.cache_dir, desc="test frames")
    probs = predict_frames(final, x_test)
    test_metrics = metrics(index.labels(parts["test"]), probs.argmax(axis=1), index.classes)
    test_metrics["split"] = "test"
    (out / METRICS_FILE).write_text(json.dumps(test_metrics, indent=2) + "\n")

    durations = clip_durations(parts["train"])
    config = ModelConfig(
        arch=opts.arch,
        preset=opts.preset,
        classes=index.classes,
        frames=opts.frames,
        size=opts.size,
        window_s=round(float(np.median(durations)), 2) if durations else 7.0,
        seed=opts.seed,
        data=Path(opts.data).resolve().name,
        split=split,
        epochs=len(rows),
        best_epoch=best + 1,
        train_seconds=round(train_seconds, 1),
        params=int(final.count_params()),
        hyper={
            "batch_size": opts.batch_size, "lr": opts.lr, "warmup_epochs": opts.warmup_epochs,
            "max_epochs": opts.epochs, "patience": opts.patience, "stop_from_epoch": opts.stop_from_epoch,
            "optimizer": "AdamW", "weight_decay": opts.weight_decay, "mixup": opts.mixup,
            "shipped": ("refit on training + validation groups, {} epochs".format(refit["epochs"]) if refit
                        else "best epoch" if averaged is None
                        else "average of epochs {}-{}".format(*averaged["epochs"])),
            **({} if refit is None else {"refit": refit}),
            **({} if averaged is None else {"average_val_loss": round(averaged["val_loss"], 4),
                                            "average_val_accuracy": round(averaged["val_accuracy"], 4)}),
            "norm": opts.norm, "validation": opts.validation,
            "test": opts.test, "augment": "jitter+crop+flip+brightness/contrast/saturation+grey",
            "strategy": opts.strategy,
            "device": "gpu" if gpus else "cpu",
        },
        versions=versions(),
    )
    config.save(out)
    _export(out)
    shutil.rmtree(resume_dir)
    log.info("trained %s in %.0f s (this call %.0f s): test accuracy %.3f, macro-F1 %.3f", out, train_seconds,
             time.perf_counter() - started, test_metrics["accuracy"], test_metrics["macro_f1"])
    return config


def _export(out: Path) -> None:
    """model.onnx beside model.keras (the command line serves it without TensorFlow). Optional: when it cannot be
    made, the model is served by TensorFlow and a warning says why."""
    from har.export import ONNX_FILE, export_onnx

    (out / ONNX_FILE).unlink(missing_ok=True)  # never leave an earlier model's copy beside this one
    try:
        export_onnx(out)
    except (ImportError, HarError) as exc:
        log.warning("no %s for %s: %s", ONNX_FILE, out, exc)


def _compiled(opts: TrainOptions, classes: int) -> keras.Model:
    """A fresh model of ``opts``' architecture, compiled for training (AdamW; soft labels with mixup)."""
    from har import models

    model = models.build(opts.arch, opts.preset, classes, opts.frames, opts.size, opts.norm)
    soft = opts.mixup > 0
    model.compile(
        optimizer=keras.optimizers.AdamW(opts.lr, weight_decay=opts.weight_decay),
        loss=keras.losses.CategoricalCrossentropy() if soft else keras.losses.SparseCategoricalCrossentropy(),
        metrics=[(keras.metrics.CategoricalAccuracy if soft else keras.metrics.SparseCategoricalAccuracy)(
            name="accuracy")],
    )
    return model


def _refit(opts: TrainOptions, strategy, dataset, classes: int, epochs: int, verbose: int) -> list[dict[str, float]]:
    """Train a fresh model on ``dataset`` for ``epochs`` epochs of the same schedule, resumable on its own
    (``_resume/refit/``); its last model is ``_resume/refit/last.keras``. Returns its history rows."""
    out = Path(opts.out)
    rdir = out / RESUME_DIR / REFIT_DIR
    rdir.mkdir(exist_ok=True)
    state = json.loads((rdir / STATE_FILE).read_text()) if (rdir / STATE_FILE).is_file() else {"epoch": 0}
    prior = _read_history(out / REFIT_HISTORY_FILE)[: state["epoch"]] if state["epoch"] else []
    with strategy.scope():
        if state["epoch"]:
            model = keras.saving.load_model(rdir / LAST_FILE, safe_mode=True)
            log.info("resuming the refit phase of %s after epoch %d", out, state["epoch"])
        else:
            keras.utils.set_random_seed(opts.seed)  # the same start whether or not phase 1 ran in this process
            model = _compiled(opts, classes)
            log.info("refit phase: training + validation groups, %d epochs", epochs)
    if state["epoch"] < epochs:
        model.fit(dataset, epochs=epochs, initial_epoch=state["epoch"], verbose=verbose, callbacks=[
            keras.callbacks.LearningRateScheduler(lambda epoch: lr_at(epoch, opts)),
            _EpochLog(out, prior, resume=rdir, history=REFIT_HISTORY_FILE),
        ])
    return _read_history(out / REFIT_HISTORY_FILE)


class _EpochLog(keras.callbacks.Callback):
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
            _update_average(self.model, resume)
        self.model.save(resume / f"tmp.{LAST_FILE}")
        os.replace(resume / f"tmp.{LAST_FILE}", resume / LAST_FILE)
        self.rows.append(row)
        _write_history(self.out / self.history, self.rows)
        # EarlyStopping runs before this callback, so stop_training already says whether the run is over.
        # Training time is the sum of history.csv's epoch_seconds: not kept twice here.
        state = {"epoch": epoch + 1, "stopped": bool(self.model.stop_training)}
        (resume / f"tmp.{STATE_FILE}").write_text(json.dumps(state))
        os.replace(resume / f"tmp.{STATE_FILE}", resume / STATE_FILE)


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
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


def _avg_count(resume: Path) -> int:
    path = resume / AVG_WEIGHTS
    if not path.is_file():
        return 0
    with np.load(path) as f:
        return int(f["count"])


def _load_average(resume: Path) -> list[np.ndarray]:
    with np.load(resume / AVG_WEIGHTS) as f:
        return [f[f"w{i}"] for i in range(len(f.files) - 1)]


def _update_average(model: keras.Model, resume: Path) -> None:
    """Fold the model's current weights into the running average kept in ``resume`` (weights and count in one
    file, so a resumed run continues it). Written before the epoch's resume state: a kill re-runs the epoch, and
    the epoch enters the average once (the file is replaced only after the epoch is over)."""
    count = _avg_count(resume)
    weights = [np.asarray(w, np.float64) for w in model.get_weights()]
    if count:
        weights = [a + (w - a) / (count + 1) for a, w in zip(_load_average(resume), weights, strict=True)]
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

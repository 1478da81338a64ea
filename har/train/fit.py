"""Fit a model on a folder-per-class dataset with a group-aware split, and write a self-describing model dir.

``python -m har train --like models/lrcn`` (or ``--arch lrcn --data DATA --out DIR``, the shipped recipe by default:
:mod:`har.train.recipe`) writes ``model.keras`` (best validation loss), ``config.json``, ``history.csv`` (per epoch:
loss, accuracy, val_loss, val_accuracy, learning_rate, epoch_seconds) and ``metrics.json`` (the test split, groups
never seen in training or validation); :mod:`har.train.artifacts` writes them.

With ``--refit``, a second phase follows the validated one: a fresh model, the same seed and learning-rate
schedule, trained on the training and validation groups together for as many epochs as the validated phase's best
epoch; that model ships (``refit_history.csv`` logs it; ``history.csv`` keeps the validated phase's curves). The
test groups stay unseen either way.

A run keeps ``_resume/`` (last epoch's full model with optimizer state) while it runs; ``--resume`` continues a
killed run from its last finished epoch, with early stopping and best-checkpoint state rebuilt from history.csv.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np

from har.config import ModelConfig
from har.data.trainsets import TrainData, frozen, train_dataset
from har.errors import HarError
from har.modeldir import HISTORY_FILE, MODEL_FILE, REFIT_HISTORY_FILE
from har.train import artifacts
from har.train.checkpoints import (
    LAST_FILE,
    REFIT_DIR,
    RESUME_DIR,
    STATE_FILE,
    EpochLog,
    ResumableEarlyStopping,
    read_history,
)
from har.train.distributed import all_workers_here, cluster_of, fit, pick_strategy
from har.train.options import TrainOptions, built, check, compiled
from har.train.recipe import options_of
from har.train.schedule import scheduler

__all__ = ["TrainOptions", "fit_openset", "options_of", "train"]

log = logging.getLogger(__name__)


def train(opts: TrainOptions) -> ModelConfig | None:
    """Run one training; returns the config written next to the model. Raises :class:`HarError` on bad input.

    Under ``--strategy multiworker`` every worker runs this in step; worker 0 (the chief) writes the model to
    ``opts.out``. Worker k > 0 keeps its own checkpoints in ``opts.out/_worker<k>/`` (so every worker may be given
    the same ``--out``, shared or not), removes them when training is over, and returns None."""
    check(opts)
    with _process_state(opts.seed) as device:
        strategy = pick_strategy(opts.strategy)
        worker, workers = cluster_of(strategy)
        if worker:
            opts = dataclasses.replace(opts, out=Path(opts.out) / f"_worker{worker}")
        out, resume_dir = _prepare(opts)
        data = TrainData.load(opts, built)
        started = time.perf_counter()
        rows = _fit(opts, data, strategy)
        train_seconds = sum(r["epoch_seconds"] for r in rows)
        best = int(np.argmin([r["val_loss"] for r in rows]))
        refit = None
        if opts.refit:  # phase 2: training + validation groups, as many epochs as the validated phase's best
            refit = _refit(opts, data, strategy, best + 1)
            train_seconds += refit["seconds"]
        if worker:  # every step that needs all the workers is done; the chief writes the model
            shutil.rmtree(out)
            log.info("worker %d of %d trained; waiting for worker 0 to write the model", worker, workers)
            all_workers_here(strategy)
            return None
        final, averaged = artifacts.final_model(opts, data, rows, best)
        final.save(out / MODEL_FILE)
        test_metrics = artifacts.test_metrics(opts, data, final)
        config = artifacts.model_config(opts, data, final, rows, best, train_seconds, refit, averaged, device,
                                        workers)
        # the open-set score (har.openset.score): heads and banks that never saw each clip
        config = artifacts.open_set(opts, data, config, out)
        config.save(out)
        artifacts.export(out, opts.export)
        shutil.rmtree(resume_dir)
        all_workers_here(strategy)
        log.info("trained %s in %.0f s (this call %.0f s): test accuracy %.3f, macro-F1 %.3f", out, train_seconds,
                 time.perf_counter() - started, test_metrics["accuracy"], test_metrics["macro_f1"])
    return config


def fit_openset(directory: str | Path, data: str | Path, cache_dir: str | Path | None = None,
                others: str | Path | None = None) -> ModelConfig:
    """Fit (or refit) the open-set score of a trained frozen-encoder model directory on its config's split of
    ``data``, with its own recipe (``python -m har openset``), its gate learning from the clips of other actions in
    ``others`` (a folder per class) when given; writes ``openset.npz`` and ``config.json``'s ``openset`` entry, and
    returns the config."""
    config = ModelConfig.load(directory)
    if not config.encoder:
        raise HarError(f"{directory} has no frozen encoder ({config.preset} preset): its open-set score cannot be "
                       "fitted from cached encoder features.")
    opts = dataclasses.replace(options_of(config, data, directory, cache_dir), openset=True,
                               others=Path(others) if others else None)
    if opts.others and not opts.others.is_dir():
        raise HarError(f"No folder of other actions at {opts.others} (--others): give a folder with a sub-folder "
                       "per action.")
    run = TrainData.load(opts, built)
    if run.split != config.split:
        raise HarError(f"{data} does not split as {directory} was trained (seed {config.seed}): its open-set score "
                       "must be fitted on the same dataset.")
    hyper = {k: v for k, v in config.hyper.items() if k not in ("openset", "others")}  # "openset": False: none
    if opts.others:
        hyper["others"] = opts.others.resolve().name
    config = artifacts.open_set(opts, run, dataclasses.replace(config, hyper=hyper), Path(directory))
    config.save(directory)
    from har.serve.quantize import refresh_openset_shift

    refresh_openset_shift(directory, data)  # the int8 half's offsets are of the score just fitted
    return config


@contextmanager
def _process_state(seed: int):
    """The process-wide state of a training run, set for it and put back after it: the one seed (python, numpy,
    tf), mixed precision on a GPU, deterministic ops on the CPU (reproducible given the seed). Yields the
    device kind, ``"gpu"`` or ``"cpu"``."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # the public API can only turn determinism on

    policy = keras.mixed_precision.global_policy()
    deterministic = tf_config.is_op_determinism_enabled()
    keras.utils.set_random_seed(seed)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        tf.config.experimental.enable_op_determinism()
    try:
        yield "gpu" if gpus else "cpu"
    finally:
        keras.mixed_precision.set_global_policy(policy)
        if not deterministic:
            tf_config.disable_op_determinism()


def _prepare(opts: TrainOptions) -> tuple[Path, Path]:
    """The model directory and its ``_resume/``: an earlier unfinished run is forgotten unless resumed."""
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
    return out, resume_dir


def _fit(opts: TrainOptions, data: TrainData, strategy) -> list[dict[str, float]]:
    """The validated phase: fit on the training groups, validate on the validation groups, resumable; returns
    every epoch's history row (a resumed run's earlier epochs included)."""
    import tensorflow as tf

    from har.data import augment
    from har.data.dataset import make_dataset

    out, resume_dir = Path(opts.out), Path(opts.out) / RESUME_DIR
    k = len(data.index.classes)
    ds_train = train_dataset(opts, data.x_train, data.y_train, k, strategy.num_replicas_in_sync)
    if frozen(opts):
        from har.data.features import served_dataset

        ds_val = served_dataset(data.x_val, data.y_val, opts.batch_size)
    else:
        ds_val = make_dataset(data.x_val, data.y_val, opts.batch_size,
                              map_fn=lambda x: augment.centre(x, opts.frames))
    if opts.mixup > 0:  # soft labels: one-hot everywhere
        ds_val = ds_val.map(lambda x, y: (x, tf.one_hot(y, k)))
    history_path = out / HISTORY_FILE
    state = json.loads((resume_dir / STATE_FILE).read_text()) if opts.resume else {"epoch": 0}
    prior = read_history(history_path)[: state["epoch"]] if opts.resume else []
    with strategy.scope():
        if opts.resume:
            model = keras.saving.load_model(resume_dir / LAST_FILE, safe_mode=True)
            log.info("resuming %s after epoch %d", out, state["epoch"])
        else:
            model = compiled(opts, k, data.x_train)
    # Averaging the last epochs runs the schedule to its end: no early stopping then.
    stopping = [] if opts.average_last else [
        ResumableEarlyStopping([r["val_loss"] for r in prior], monitor="val_loss", mode="min", patience=opts.patience,
                               start_from_epoch=opts.stop_from_epoch)]
    callbacks = [
        scheduler(opts),
        *stopping,
        EpochLog(out, prior, average_from=opts.epochs - opts.average_last if opts.average_last else None),
    ]
    if state["epoch"] < opts.epochs and not state.get("stopped"):
        fit(model, strategy, ds_train, validation=ds_val, epochs=opts.epochs, initial_epoch=state["epoch"],
            callbacks=callbacks)
    return read_history(history_path)


def _refit(opts: TrainOptions, data: TrainData, strategy, epochs: int) -> dict:
    """Train a fresh model on the training and validation groups for ``epochs`` epochs of the same schedule,
    resumable on its own (``_resume/refit/``); its last model is ``_resume/refit/last.keras``. Returns what
    ``config.hyper["refit"]`` says of it."""
    x_all, y_all = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    classes = len(data.index.classes)
    dataset = train_dataset(opts, x_all, y_all, classes, strategy.num_replicas_in_sync)
    out = Path(opts.out)
    rdir = out / RESUME_DIR / REFIT_DIR
    rdir.mkdir(exist_ok=True)
    state = json.loads((rdir / STATE_FILE).read_text()) if (rdir / STATE_FILE).is_file() else {"epoch": 0}
    prior = read_history(out / REFIT_HISTORY_FILE)[: state["epoch"]] if state["epoch"] else []
    with strategy.scope():
        if state["epoch"]:
            model = keras.saving.load_model(rdir / LAST_FILE, safe_mode=True)
            log.info("resuming the refit phase of %s after epoch %d", out, state["epoch"])
        else:
            keras.utils.set_random_seed(opts.seed)  # the same start whether or not phase 1 ran in this process
            model = compiled(opts, classes, x_all)
            log.info("refit phase: training + validation groups, %d epochs", epochs)
    if state["epoch"] < epochs:
        fit(model, strategy, dataset, epochs=epochs, initial_epoch=state["epoch"], callbacks=[
            scheduler(opts),
            EpochLog(out, prior, resume=rdir, history=REFIT_HISTORY_FILE),
        ])
    rows = read_history(out / REFIT_HISTORY_FILE)
    return {"epochs": len(rows), "clips": len(x_all), "seconds": round(sum(r["epoch_seconds"] for r in rows), 1)}

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

import dataclasses
import json
import logging
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from har.config import ModelConfig, Sampling
from har.data.trainsets import TrainData, compile_for, frozen, lr_at, train_dataset
from har.errors import HarError
from har.modeldir import HISTORY_FILE, METRICS_FILE, MODEL_FILE, REFIT_HISTORY_FILE
from har.openset.score import OPENSET_FILE
from har.train.checkpoints import (
    AVG_WEIGHTS,
    BEST_WEIGHTS,
    LAST_FILE,
    REFIT_DIR,
    RESUME_DIR,
    STATE_FILE,
    EpochLog,
    ResumableEarlyStopping,
    avg_count,
    load_average,
    read_history,
    recompute_batch_norm,
)
from har.train.distributed import all_workers_here, cluster_of, fit, pick_strategy

log = logging.getLogger(__name__)


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
    encoder: str = "lite0"  # imagenet preset: the frozen frame encoder (har.models.backbone variant) ...
    encoder_blocks: int = 8  # ... and how many of its MBConv blocks (16: the whole Lite0)
    # imagenet preset: besides whole clips, train on temporal crops from this many seconds to the whole clip (0: none)
    min_window_s: float = 0.0
    strategy: str = "auto"  # "auto" (one device: GPU if any), "mirrored" (all local GPUs), "multiworker", "cpu"
    resume: bool = False
    cache_dir: Path | None = None
    max_clips: int | None = None  # per split, for smoke tests only
    # What a run makes besides the model; a test that does not check them skips them (the config records it).
    export: bool = True  # the ONNX copy beside model.keras (without it the model is served by TensorFlow)
    openset: bool = True  # imagenet preset: the familiarity score from held-out heads (openset.npz)


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


def train(opts: TrainOptions) -> ModelConfig | None:
    """Run one training; returns the config written next to the model. Raises :class:`HarError` on bad input.

    Under ``--strategy multiworker`` every worker runs this in step; worker 0 (the chief) writes the model to
    ``opts.out``. Worker k > 0 keeps its own checkpoints in ``opts.out/_worker<k>/`` (so every worker may be given
    the same ``--out``, shared or not), removes them when training is over, and returns None."""
    _check(opts)
    with _process_state(opts.seed) as device:
        strategy = pick_strategy(opts.strategy)
        worker, workers = cluster_of(strategy)
        if worker:
            opts = dataclasses.replace(opts, out=Path(opts.out) / f"_worker{worker}")
        out, resume_dir = _prepare(opts)
        data = TrainData.load(opts, _built)
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
        final, averaged = _final_model(opts, data, rows, best)
        final.save(out / MODEL_FILE)
        test_metrics = _test(opts, data, final)
        config = ModelConfig(
            arch=opts.arch, preset=opts.preset, classes=data.index.classes, frames=opts.frames, size=opts.size,
            **({"encoder": opts.encoder, "encoder_blocks": opts.encoder_blocks, "min_window_s": opts.min_window_s}
               if frozen(opts) else {}),
            window_s=round(float(np.median(data.durations)), 2) if data.durations else 7.0, seed=opts.seed,
            data=Path(opts.data).resolve().name, split=data.split, epochs=len(rows), best_epoch=best + 1,
            train_seconds=round(train_seconds, 1), params=int(final.count_params()),
            hyper=_hyper(opts, refit, averaged, device, workers), versions=versions(),
        )
        if frozen(opts) and opts.openset:  # the open-set score (har.openset.score): heads and banks that never saw
            config = _open_set(opts, data, config, out)  # each clip
        else:
            (out / OPENSET_FILE).unlink(missing_ok=True)  # an earlier model's score would not fit this one
        config.save(out)
        _export(out, opts.export)
        shutil.rmtree(resume_dir)
        all_workers_here(strategy)
        log.info("trained %s in %.0f s (this call %.0f s): test accuracy %.3f, macro-F1 %.3f", out, train_seconds,
                 time.perf_counter() - started, test_metrics["accuracy"], test_metrics["macro_f1"])
    return config


def fit_openset(directory: str | Path, data: str | Path, cache_dir: str | Path | None = None) -> ModelConfig:
    """Fit (or refit) the open-set score of a trained frozen-encoder model directory on its config's split of
    ``data``, with its own recipe (``python -m har openset``); writes ``openset.npz`` and ``config.json``'s
    ``openset`` entry, and returns the config."""
    config = ModelConfig.load(directory)
    if not config.encoder:
        raise HarError(f"{directory} has no frozen encoder ({config.preset} preset): its open-set score cannot be "
                       "fitted from cached encoder features.")
    opts = options_of(config, data, directory, cache_dir)
    run = TrainData.load(opts, _built)
    if run.split != config.split:
        raise HarError(f"{data} does not split as {directory} was trained (seed {config.seed}): its open-set score "
                       "must be fitted on the same dataset.")
    config = _open_set(opts, run, config, Path(directory))
    config.save(directory)
    return config


def options_of(config: ModelConfig, data: str | Path, out: str | Path, cache_dir: str | Path | None = None
               ) -> TrainOptions:
    """The options a model directory's config was trained with (its recipe), on ``data``."""
    h = config.hyper
    return TrainOptions(
        arch=config.arch, data=Path(data), out=Path(out), preset=config.preset,
        epochs=int(h.get("max_epochs", config.epochs)), batch_size=int(h["batch_size"]), lr=float(h["lr"]),
        warmup_epochs=int(h["warmup_epochs"]), weight_decay=float(h["weight_decay"]), mixup=float(h["mixup"]),
        seed=config.seed, validation=float(h["validation"]), test=float(h["test"]), frames=config.frames,
        size=config.size, encoder=config.encoder, encoder_blocks=config.encoder_blocks,
        min_window_s=config.min_window_s, cache_dir=Path(cache_dir) if cache_dir else None)


def _open_set(opts: TrainOptions, data: TrainData, config: ModelConfig, out: Path) -> ModelConfig:
    """The run's open-set score (:func:`har.openset.heldout.fit_familiarity`: held-out logits of heads trained without
    each
    fold, as many epochs as the shipped model had), saved in ``out``; the config that records it."""
    from har.openset.heldout import fit_familiarity

    groups = [c.group for c in data.parts["train"]] + [c.group for c in data.parts["validation"]]
    familiarity = fit_familiarity(opts, np.concatenate([data.x_train, data.x_val]),
                                  np.concatenate([data.y_train, data.y_val]), groups, len(data.x_train),
                                  len(config.classes), config.best_epoch, config.uncertain_below)
    familiarity.save(out)
    log.info("open set: %s, threshold %.3f", familiarity.info["method"], familiarity.threshold)
    return dataclasses.replace(config, openset=familiarity.info)


def _check(opts: TrainOptions) -> None:
    if not 0 <= opts.average_last <= opts.epochs:
        raise HarError(f"--average-last {opts.average_last}: it must be between 0 and the number of epochs "
                       f"({opts.epochs}).")
    if frozen(opts) and opts.average_last:
        raise HarError("--average-last does not go with the imagenet preset: it trains on cached encoder features.")
    if opts.refit and opts.average_last:
        raise HarError("--refit and --average-last do not go together: the refit phase ships its last epoch.")


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
            model = _compiled(opts, k, data.x_train)
    # Averaging the last epochs runs the schedule to its end: no early stopping then.
    stopping = [] if opts.average_last else [
        ResumableEarlyStopping([r["val_loss"] for r in prior], monitor="val_loss", mode="min", patience=opts.patience,
                               start_from_epoch=opts.stop_from_epoch)]
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch: lr_at(epoch, opts)),
        *stopping,
        EpochLog(out, prior, average_from=opts.epochs - opts.average_last if opts.average_last else None),
    ]
    if state["epoch"] < opts.epochs and not state.get("stopped"):
        fit(model, strategy, ds_train, validation=ds_val, epochs=opts.epochs, initial_epoch=state["epoch"],
            callbacks=callbacks)
    return read_history(history_path)


def _final_model(opts: TrainOptions, data: TrainData, rows: list[dict[str, float]],
                 best: int) -> tuple[keras.Model, dict | None]:
    """The shipped model in a fresh, uncompiled model (no optimizer state to ship): the refit phase's last epoch,
    the average of the last epochs' weights with batch-norm statistics recomputed on the (augmented) training
    clips, or the best epoch's weights. Returns it and, for an average, its validation figures."""
    import tensorflow as tf

    from har.data import augment
    from har.evaluation.evaluate import predict_frames
    from har.models import builders as models

    resume_dir = Path(opts.out) / RESUME_DIR
    n = opts.frames
    final = _built(opts, len(data.index.classes))
    trained = _head_of(opts, final, data.x_train) if frozen(opts) else final  # what was trained
    if opts.refit or not (opts.average_last and (resume_dir / AVG_WEIGHTS).is_file()):
        if opts.refit:
            last = keras.saving.load_model(resume_dir / REFIT_DIR / LAST_FILE, safe_mode=True)
            trained.set_weights(last.get_weights())
        else:
            trained.load_weights(resume_dir / BEST_WEIGHTS)
        if trained is not final:
            models.transfer(trained, final)
        return final, None
    final.set_weights([w.astype(v.dtype) for w, v in zip(load_average(resume_dir), final.get_weights(), strict=True)])
    # one augmented pass over the training clips, as the statistics were gathered in training
    recompute_batch_norm(final, np.stack([
        augment.augment_clip(tf.constant(x), tf.constant([opts.seed, i], tf.int64), n).numpy()
        for i, x in enumerate(data.x_train)]))
    p_val = predict_frames(final, np.stack([augment.centre(x, n).numpy() for x in data.x_val]))
    y_val = data.y_val
    averaged = {
        "epochs": [len(rows) - avg_count(resume_dir) + 1, len(rows)],
        "val_loss": float(-np.mean(np.log(np.maximum(p_val[np.arange(len(y_val)), y_val], 1e-7)))),
        "val_accuracy": float(np.mean(p_val.argmax(axis=1) == y_val)),
    }
    log.info("shipping the average of epochs %d-%d: val_loss %.4f, val_accuracy %.4f (best epoch %d: %.4f)",
             *averaged["epochs"], averaged["val_loss"], averaged["val_accuracy"], best + 1, rows[best]["val_loss"])
    return final, averaged


def _test(opts: TrainOptions, data: TrainData, final: keras.Model) -> dict:
    """The test groups' metrics, written to ``metrics.json``: the clips sampled as served."""
    from har.data.dataset import load_frames
    from har.evaluation.evaluate import metrics, predict_frames

    x_test = load_frames(data.parts["test"], Sampling(opts.frames, opts.size), opts.cache_dir, desc="test frames")
    probs = predict_frames(final, x_test)
    test_metrics = metrics(data.index.labels(data.parts["test"]), probs.argmax(axis=1), data.index.classes)
    test_metrics["split"] = "test"
    (Path(opts.out) / METRICS_FILE).write_text(json.dumps(test_metrics, indent=2) + "\n")
    return test_metrics


def _hyper(opts: TrainOptions, refit: dict | None, averaged: dict | None, device: str, workers: int) -> dict:
    """``config.hyper``: the recipe as run, and what shipped."""
    from har.data import features

    shipped = ("refit on training + validation groups, {} epochs".format(refit["epochs"]) if refit
               else "best epoch" if averaged is None else "average of epochs {}-{}".format(*averaged["epochs"]))
    return {
        "batch_size": opts.batch_size, "lr": opts.lr, "warmup_epochs": opts.warmup_epochs,
        "max_epochs": opts.epochs, "patience": opts.patience, "stop_from_epoch": opts.stop_from_epoch,
        "optimizer": "AdamW", "weight_decay": opts.weight_decay, "mixup": opts.mixup, "shipped": shipped,
        **({} if refit is None else {"refit": refit}),
        **({} if averaged is None else {"average_val_loss": round(averaged["val_loss"], 4),
                                        "average_val_accuracy": round(averaged["val_accuracy"], 4)}),
        "norm": opts.norm, "validation": opts.validation,
        "test": opts.test, "augment": "jitter+crop+flip+brightness/contrast/saturation+grey" + (
            f" on {features.VIEWS - 1} cached views ({features.CROP_VIEWS} temporal crops from {opts.min_window_s:g} s)"
            if frozen(opts) else ""),
        "strategy": opts.strategy, "device": device, **({"workers": workers} if workers > 1 else {}),
        # only when skipped: no ONNX copy (served by TensorFlow), no familiarity score (top probability alone)
        **({} if opts.export else {"export": False}),
        **({} if opts.openset or not frozen(opts) else {"openset": False}),
    }


def _export(out: Path, export: bool = True) -> None:
    """The ONNX copy beside model.keras (the command line serves it without TensorFlow). Optional: when it cannot be
    made (or ``export`` is False), the model is served by TensorFlow; a warning says why it could not."""
    from har.serve.export import ONNX_FILES, export_onnx

    for name in ONNX_FILES:  # never leave an earlier model's copy beside this one
        (out / name).unlink(missing_ok=True)
    if not export:
        return
    try:
        export_onnx(out)
    except (ImportError, HarError) as exc:
        log.warning("no ONNX copy for %s: %s", out, exc)


def _built(opts: TrainOptions, classes: int) -> keras.Model:
    from har.models import builders as models

    return models.build(opts.arch, opts.preset, classes, opts.frames, opts.size, opts.norm, opts.encoder,
                        opts.encoder_blocks)


def _head_of(opts: TrainOptions, model: keras.Model, features: np.ndarray) -> keras.Model:
    """The temporal part of ``model``'s architecture alone, on encoder maps shaped as ``features``' views."""
    from har.models import builders as models

    return models.temporal_head(opts.arch, tuple(features.shape[2:]), model.output.shape[-1])


def _compiled(opts: TrainOptions, classes: int, features: np.ndarray | None = None) -> keras.Model:
    """A fresh model of ``opts``' architecture, compiled for training (:func:`har.data.trainsets.compile_for`): the
    temporal part alone when the run trains on cached ``features``."""
    model = _built(opts, classes)
    return compile_for(_head_of(opts, model, features) if frozen(opts) else model, opts)


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
            model = _compiled(opts, classes, x_all)
            log.info("refit phase: training + validation groups, %d epochs", epochs)
    if state["epoch"] < epochs:
        fit(model, strategy, dataset, epochs=epochs, initial_epoch=state["epoch"], callbacks=[
            keras.callbacks.LearningRateScheduler(lambda epoch: lr_at(epoch, opts)),
            EpochLog(out, prior, resume=rdir, history=REFIT_HISTORY_FILE),
        ])
    rows = read_history(out / REFIT_HISTORY_FILE)
    return {"epochs": len(rows), "clips": len(x_all), "seconds": round(sum(r["epoch_seconds"] for r in rows), 1)}

"""What a run leaves in its model directory besides its logs: the shipped model, the test groups' metrics,
``config.json`` (the recipe as run and what it gave), the open-set score and the ONNX copy."""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
from pathlib import Path

import keras
import numpy as np

from har.config import ModelConfig, Sampling
from har.data.trainsets import TrainData, frozen
from har.errors import HarError
from har.modeldir import METRICS_FILE
from har.openset.score import OPENSET_FILE
from har.train.checkpoints import (
    AVG_WEIGHTS,
    BEST_WEIGHTS,
    LAST_FILE,
    REFIT_DIR,
    RESUME_DIR,
    avg_count,
    load_average,
    recompute_batch_norm,
)
from har.train.options import TrainOptions, built, head_of

log = logging.getLogger(__name__)


def model_config(opts: TrainOptions, data: TrainData, final: keras.Model, rows: list[dict[str, float]], best: int,
                 train_seconds: float, refit: dict | None, averaged: dict | None, device: str,
                 workers: int) -> ModelConfig:
    """The config the run writes next to its model (before its open-set entry): the recipe as run, the split,
    what the fit took and gave, and the versions it ran on."""
    return ModelConfig(
        arch=opts.arch, preset=opts.preset, classes=data.index.classes, frames=opts.frames, size=opts.size,
        **({"encoder": opts.encoder, "encoder_blocks": opts.encoder_blocks, "min_window_s": opts.min_window_s}
           if frozen(opts) else {}),
        whole_clip_window_s=round(float(np.median(data.durations)), 2) if data.durations else 7.0, seed=opts.seed,
        data=Path(opts.data).resolve().name, split=data.split, epochs=len(rows), best_epoch=best + 1,
        train_seconds=round(train_seconds, 1), params=int(final.count_params()),
        hyper=hyper(opts, refit, averaged, device, workers), versions=versions(),
    )


def final_model(opts: TrainOptions, data: TrainData, rows: list[dict[str, float]],
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
    final = built(opts, len(data.index.classes))
    trained = head_of(opts, final, data.x_train) if frozen(opts) else final  # what was trained
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


def test_metrics(opts: TrainOptions, data: TrainData, final: keras.Model) -> dict:
    """The test groups' metrics, written to ``metrics.json``: the clips sampled as served."""
    from har.data.dataset import load_frames
    from har.evaluation.evaluate import metrics, predict_frames

    x_test = load_frames(data.parts["test"], Sampling(opts.frames, opts.size), opts.cache_dir, desc="test frames")
    probs = predict_frames(final, x_test)
    test_metrics = metrics(data.index.labels(data.parts["test"]), probs.argmax(axis=1), data.index.classes)
    test_metrics["split"] = "test"
    (Path(opts.out) / METRICS_FILE).write_text(json.dumps(test_metrics, indent=2) + "\n")
    return test_metrics


def hyper(opts: TrainOptions, refit: dict | None, averaged: dict | None, device: str, workers: int) -> dict:
    """``config.hyper``: the recipe as run, and what shipped."""
    from har.data import features

    shipped = ("refit on training + validation groups, {} epochs".format(refit["epochs"]) if refit
               else "best epoch" if averaged is None else "average of epochs {}-{}".format(*averaged["epochs"]))
    return {
        "batch_size": opts.batch_size, "lr": opts.lr, "warmup_epochs": opts.warmup_epochs,
        "max_epochs": opts.epochs, "patience": opts.patience, "stop_from_epoch": opts.stop_from_epoch,
        "optimizer": "AdamW", "weight_decay": opts.weight_decay, "mixup": opts.mixup, "shipped": shipped,
        **({} if refit is None else {"refit": refit}),
        **({"average_last": opts.average_last} if opts.average_last else {}),
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
        **({"others": Path(opts.others).resolve().name} if opts.others and frozen(opts) and opts.openset else {}),
    }


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


def open_set(opts: TrainOptions, data: TrainData, config: ModelConfig, out: Path) -> ModelConfig:
    """The run's open-set score (:func:`har.openset.heldout.fit_familiarity`: held-out logits of heads trained without
    each fold, as many epochs as the shipped model had), saved in ``out``; the config that records it. A run without
    one (not on a frozen encoder, or ``opts.openset`` False) removes an earlier model's file instead."""
    from har.config import Sampling
    from har.data.dataset import default_cache_dir
    from har.models.builders import build
    from har.openset.heldout import OtherClips, fit_familiarity

    if not (frozen(opts) and opts.openset):
        (out / OPENSET_FILE).unlink(missing_ok=True)  # an earlier model's score would not fit this one
        return config
    groups = [c.group for c in data.parts["train"]] + [c.group for c in data.parts["validation"]]
    others = None
    if opts.others:  # the gate's clips of other actions, through the same frozen encoder (cached)
        model = build(opts.arch, opts.preset, len(config.classes), opts.frames, opts.size, opts.norm, opts.encoder,
                      opts.encoder_blocks)
        others = OtherClips.load(opts.others, model, Sampling(opts.frames, opts.size), opts.min_window_s,
                                 opts.cache_dir or default_cache_dir())
    familiarity = fit_familiarity(opts, np.concatenate([data.x_train, data.x_val]),
                                  np.concatenate([data.y_train, data.y_val]), groups, len(data.x_train),
                                  len(config.classes), config.best_epoch, config.uncertain_below, others)
    familiarity.save(out)
    log.info("open set: %s, threshold %.3f", familiarity.info["method"], familiarity.threshold)
    return dataclasses.replace(config, openset=familiarity.info)


def export(out: Path, enabled: bool = True) -> None:
    """The ONNX copy beside model.keras (the command line serves it without TensorFlow). Optional: when it cannot be
    made (or is not ``enabled``), the model is served by TensorFlow; a warning says why it could not."""
    from har.serve.export import ONNX_FILES, export_onnx

    for name in ONNX_FILES:  # never leave an earlier model's copy beside this one
        (out / name).unlink(missing_ok=True)
    if not enabled:
        return
    try:
        export_onnx(out)
    except (ImportError, HarError) as exc:
        log.warning("no ONNX copy for %s: %s", out, exc)

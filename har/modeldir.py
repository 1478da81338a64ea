"""The model directory: one folder per trained model, self-describing.

``models/<name>/``::

    model.keras    weights and graph, Keras 3 format, loads with safe_mode=True (no optimizer state)
    config.json    har.config.ModelConfig: classes, frames, size, preset, split groups, seed, versions, ...
    history.csv    one row per epoch: epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, epoch_seconds
    metrics.json   test-split metrics (har.evaluation.evaluate schema)
    frame.onnx     the same model for ONNX Runtime in two halves, the per-frame encoder and the temporal head,
    head.onnx      each stamped with model.keras' digest (har.serve.export; optional)
    model.onnx     instead of those two, for a model that does not split frame by frame: the whole model
    refit_history.csv   only for a model refit on training + validation groups (``train --refit``): its epochs,
                   without validation columns; history.csv then logs the validated phase that chose its length
"""

from __future__ import annotations

import os
from pathlib import Path

from har.config import CONFIG_FILE, ModelConfig
from har.errors import ModelError
from har.settings import Settings, settings

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
REFIT_HISTORY_FILE = "refit_history.csv"
METRICS_FILE = "metrics.json"
REQUIRED = (MODEL_FILE, CONFIG_FILE)


def __getattr__(name: str):
    # MODELS_ROOT: the model directories, HAR_MODELS_DIR (default: models/ at the top of the repository), read
    # when asked for, alone: a module that imports the name must not fail on another setting's bad value.
    if name == "MODELS_ROOT":
        return Settings.from_env({"HAR_MODELS_DIR": os.environ.get("HAR_MODELS_DIR", "")}).models_dir
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_model_dir(name_or_dir: str | os.PathLike) -> Path:
    """``lrcn`` -> ``models/lrcn``; an existing directory is taken as it is. Raises :class:`ModelError`."""
    root = settings().models_dir  # HAR_MODELS_DIR
    p = Path(name_or_dir)
    if p.is_dir():
        candidate = p
    elif (root / str(name_or_dir)).is_dir() and os.sep not in str(name_or_dir):
        candidate = root / str(name_or_dir)
    else:
        shipped = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
        raise ModelError(
            f"No model named or found at '{name_or_dir}'. Shipped models: {', '.join(shipped) or 'none'}; "
            "or give the path of a trained model directory."
        )
    missing = [f for f in REQUIRED if not (candidate / f).is_file()]
    if missing:
        raise ModelError(f"Model directory {candidate} is incomplete: {', '.join(missing)} missing.")
    return candidate


def load_model(name_or_dir: str | os.PathLike):
    """``(keras.Model, ModelConfig)`` from a model directory, loaded with ``safe_mode=True`` and not compiled."""
    import keras

    directory = resolve_model_dir(name_or_dir)
    config = ModelConfig.load(directory)
    try:
        model = keras.saving.load_model(directory / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises a zoo of types for a damaged or foreign file
        raise ModelError(f"{directory / MODEL_FILE} could not be loaded: {exc}") from exc
    n_out = model.output_shape[-1]
    if n_out != len(config.classes):
        raise ModelError(
            f"{directory}: the model has {n_out} outputs but config.json lists {len(config.classes)} classes."
        )
    return model, config

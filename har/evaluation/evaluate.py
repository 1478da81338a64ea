"""Score a model: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

The metrics schema (``metrics.json`` next to a model, and ``python -m har evaluate --json``) is::

    {"accuracy", "macro_f1", "clips", "classes", "per_class": {class: {precision, recall, f1, support}},
     "confusion": [[...]]  # rows = true class, columns = predicted class, in "classes" order
    }
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from har.errors import DatasetError


def metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Classification metrics from integer labels. A class never predicted has precision 0 (not NaN)."""
    k = len(classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    assert y_true.shape == y_pred.shape, (y_true.shape, y_pred.shape)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    support = confusion.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = support > 0  # macro average over classes that occur in the evaluated set
    return {
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "clips": int(len(y_true)),
        "classes": list(classes),
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion": confusion.tolist(),
    }


def evaluate_dir(model: str | os.PathLike, data: str | os.PathLike, cache_dir: Path | None = None,
                 batch_size: int = 16) -> dict[str, Any]:
    """Score every clip under ``data`` (a folder per class) with the model ``model`` (a name or a directory).

    The dataset's classes must be the model's (same names; the dataset may hold a subset), else
    :class:`DatasetError` lists the difference.
    """
    from har.data.dataset import index_dataset, load_frames
    from har.modeldir import load_model, resolve_model_dir

    directory = resolve_model_dir(model)
    keras_model, config = load_model(directory)
    index = index_dataset(data)
    unknown = sorted(set(index.classes) - set(config.classes))
    if unknown:
        raise DatasetError(
            f"The dataset's classes do not match the model's: {', '.join(unknown)} not among the model's classes "
            f"({', '.join(config.classes)})."
        )
    frames = load_frames(index.clips, config.sampling, cache_dir, desc="evaluate")
    ids = {c: i for i, c in enumerate(config.classes)}
    y_true = np.array([ids[c.label] for c in index.clips])
    probs = predict_frames(keras_model, frames, batch_size)
    out = metrics(y_true, probs.argmax(axis=1), config.classes)
    out["model"] = str(directory)
    out["data"] = str(data)
    return out


def predict_frames(model, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Class probabilities ``(clips, classes)`` for uint8 clips ``(clips, F, H, W, 3)``, batch by batch. The model is
    called eagerly: for the few batches of a test split that costs seconds less than tracing ``predict_on_batch``."""
    out = [np.asarray(model(frames[i : i + batch_size], training=False)) for i in range(0, len(frames), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]))

"""What teaching reads of a clip: the temporal model's own embedding and the frozen encoder's descriptor.

A shipped model ends in one softmax layer ("probs") over its *embedding*, the vector the temporal model makes of a
clip (the LRCN's LSTM outputs pooled over time, the ConvLSTM's maps pooled over space: 64 values each). Beside it,
the clip's *descriptor*: its frozen encoder features averaged over frames and space (320 values; the open set's
descriptor, :func:`har.openset.score.describe`). The embedding knows the base actions well and other actions
little (it was trained to tell six apart); the descriptor knows what ImageNet taught the encoder. A taught model
reads both (:mod:`har.teaching.taught`).

Both come from the per-frame features a :class:`har.serve.recognizer.Recognizer` serves (the frozen encoder's
output, pooled per frame for the LRCN), through the model's head up to its embedding (:func:`embedder`).
"""

from __future__ import annotations

import numpy as np

from har.errors import ModelError
from har.openset.score import describe

PROBS = "probs"  # the last layer of every model har.models.builders builds
JOINED = "taught_features"  # a taught model's Concatenate of [embedding, descriptor] before "probs"


def embedding_tensor(model):
    """The tensor a model's classes are read from before any teaching: the input of "probs" in a base model, the
    embedding part of :data:`JOINED` in a taught one."""
    try:
        joined = model.get_layer(JOINED)
    except ValueError:
        joined = None
    if joined is not None:
        return joined.input[0]
    try:
        return model.get_layer(PROBS).input
    except ValueError as exc:
        raise ModelError(f"{model.name} has no '{PROBS}' layer: only models built by har can be taught.") from exc


def frame_output(model):
    """The tensor where the served per-frame half ends (:func:`har.serve.surgery.split_per_frame`): the LRCN's
    per-frame vectors ("gap", time distributed) or the ConvLSTM's encoder maps ("encoder")."""
    for name in ("gap", "encoder"):
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        if type(layer).__name__ == "TimeDistributed":
            return layer.output
    raise ModelError(f"{model.name} has no frozen per-frame encoder: only models of the imagenet preset can be "
                     "taught.")


def embedder(model, size: int):
    """A ``keras.Model`` from per-frame features of clips ``(n, frames, *feature_shape)`` (as the served per-frame
    half gives them) to their embedding ``(n, dim)``; raises :class:`ModelError` for a model that does not split
    frame by frame (only the imagenet presets can be taught)."""
    import keras

    from har.serve.surgery import split_per_frame

    halves = split_per_frame(model, size)
    features = frame_output(model)
    if halves is None or tuple(halves[1].input_shape[1:]) != tuple(features.shape[1:]):
        raise ModelError(f"{model.name} does not split into a frozen per-frame encoder and a temporal head: only "
                         "models of the imagenet preset can be taught.")
    return keras.Model(features, embedding_tensor(model))


def head_input(maps: np.ndarray, feature_shape: tuple[int, ...]) -> np.ndarray:
    """Encoder maps ``(..., h, w, C)`` (:mod:`har.data.features`' cache) -> what the served per-frame half gives:
    the maps themselves, or for a vector per frame (``feature_shape == (C,)``) their mean over space."""
    maps = np.asarray(maps, np.float32)
    return maps.mean(axis=(-3, -2)) if len(feature_shape) == 1 else maps


def embed(embed_model, features: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings (n, dim), descriptors (n, C))`` float32 of clips' per-frame features ``(n, frames, ...)``."""
    features = np.asarray(features, np.float32)
    out = [np.asarray(embed_model(features[i : i + batch], training=False)) for i in range(0, len(features), batch)]
    dim = embed_model.output_shape[-1]
    emb = np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)
    return emb, describe(features).astype(np.float32)

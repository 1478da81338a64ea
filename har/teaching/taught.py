"""The taught model directory: the base model with a wider last layer that also reads the clip's descriptor.

The taught network is the base network up to its embedding, unchanged (the frozen encoder and the temporal
model), beside the descriptor (the per-frame half's output averaged over frames and space), joined and read by
one softmax layer over the base classes and the new ones (:mod:`har.teaching.classifier`). It keeps the per-frame
split, so every command serves it as it serves the base (timelines share each frame's features; the open set reads
its logits).

The open set: the familiarity's bank gains every view of the examples (standardised as the base bank), and its
gate (learned from other actions) a known column per new action, so the new actions look familiar; the threshold,
the scales of the evidence, the similarity and the gate stay the base model's, set on its held-out known clips
(docs/teach.md says what this does and does not promise).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from har.config import ModelConfig
from har.modeldir import MODEL_FILE
from har.openset.score import Familiarity
from har.teaching.classifier import Layer
from har.teaching.embedding import JOINED, PROBS, embedding_tensor, frame_output

METHOD = ("softmax over the temporal model's embedding and the encoder's descriptor, base rows held near the base "
          "layer, new classes' logits raised by a fixed offset (har.teach)")


def taught_network(base, layer: Layer, name: str):
    """The base ``keras.Model`` with ``layer`` as its last layer over ``[embedding, descriptor]``."""
    import keras
    from keras import layers

    features = frame_output(base)  # (batch, frames, C) or (batch, frames, h, w, C)
    pool = layers.GlobalAveragePooling1D if len(features.shape) == 3 else layers.GlobalAveragePooling3D
    descriptor = pool(name="descriptor")(features)  # (batch, C): frames (and space) averaged, as describe() does
    joined = layers.Concatenate(name=JOINED)([embedding_tensor(base), descriptor])
    dense = layers.Dense(layer.kernel.shape[1], activation="softmax", dtype="float32", name=PROBS)
    probs = dense(joined)
    dense.set_weights([layer.kernel, layer.bias])
    return keras.Model(base.inputs, probs, name=name)


def widened_familiarity(base: Familiarity, descriptors: np.ndarray, actions: np.ndarray, base_classes: int,
                        examples: int) -> Familiarity:
    """``base`` with every view's descriptor ``(m, C)`` of the examples (``actions``: each view's action) in its
    bank, each action's views repeated until it holds as many as a base class on average: the similarity averages
    a clip's K nearest bank descriptors (K = 200, some 20 clips' views), which a few examples' views alone could
    never fill. The threshold and the scales stay the base model's."""
    z = (np.asarray(descriptors, np.float32) - base.mean) / base.scale
    unit = (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)).astype(np.float32)
    per_class = len(base.bank) / max(base_classes, 1)
    parts = []
    for action in np.unique(actions):
        views = unit[actions == action]
        parts.append(np.repeat(views, max(1, round(per_class / len(views))), axis=0))
    added = np.concatenate(parts)
    info = {**base.info, "bank": len(base.bank) + len(added),
            "taught": f"bank: the base model's {len(base.bank)} descriptors and the {len(unit)} views of the "
                      f"{examples} taught examples, each action's repeated to {per_class:.0f} (a base class's "
                      "share); threshold and scales: the base model's"}
    # the gate learned from other actions gains a known column per taught action (har.openset.gate.Gate.taught)
    gate = base.gate.taught(descriptors, actions) if base.gate is not None else None
    return Familiarity(np.concatenate([base.bank, added]), base.mean, base.scale, base.threshold, base.k, info,
                       base.combine, base.evidence, gate, base.gate_combine)


def write(out: Path, base_dir: Path, network, config: ModelConfig, taught: dict,
          familiarity: Familiarity | None) -> ModelConfig:
    """The taught model directory ``out``: ``model.keras``, ``config.json`` (the base's, with the classes and
    ``taught``), ``openset.npz`` when the base has one. Files of the base that describe its own training
    (metrics, history, ONNX copy, timeline) are not carried over: they would describe another model."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("frame.onnx", "head.onnx", "model.onnx", "metrics.json", "openset.json"):
        (out / name).unlink(missing_ok=True)  # an earlier teaching's, into the same folder
    tmp = out / f".{MODEL_FILE}.tmp.keras"
    network.save(tmp)
    tmp.replace(out / MODEL_FILE)
    config = dataclasses.replace(config, classes=tuple(taught["classes_all"]), taught=taught,
                                 openset=familiarity.info if familiarity is not None else {})
    config.save(out)
    if familiarity is not None:
        familiarity.save(out)
    for name in ("history.csv",):  # the base's training log, for the model card's curves
        if (base_dir / name).is_file() and base_dir.resolve() != out.resolve():
            shutil.copyfile(base_dir / name, out / name)
    return config

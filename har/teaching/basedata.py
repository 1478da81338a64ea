"""What teaching needs of the base model's training data, stored compactly in its model directory (``teach.npz``).

For every training and validation clip of the model's split (what the shipped models are refit on), its
embedding and descriptor (:mod:`har.teaching.embedding`) of each view: the clip as served and its mirror image
(float16; about 1 MB for the six classes' 419 clips). ``python -m har teach-data --model lrcn`` makes it again from
the dataset; teaching then needs neither the dataset nor a download. The file records the ``model.keras`` it was
made from: a model retrained since refuses stale data with the command that renews it. It is computed through
the served per-frame half, so a change of that half (another runtime, quantisation) calls for the command again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from har.errors import ModelError
from har.progress import Progress, silent

log = logging.getLogger(__name__)

TEACH_FILE = "teach.npz"
VIEWS = ("served", "mirrored")  # what each stored view of a clip is


@dataclass(frozen=True)
class TeachData:
    """Embeddings and descriptors of labelled clips' views: the base model's training clips, and after teaching
    the examples too."""

    embedding: np.ndarray  # (n, views, dim) float32
    descriptor: np.ndarray  # (n, views, C) float32
    labels: np.ndarray  # (n,) int class index
    classes: tuple[str, ...]  # label names
    names: tuple[str, ...]  # each clip's group key or example name
    info: dict = field(default_factory=dict)  # provenance: data, clips, views, model digest, command

    def inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x (n * views, dim + C), y (n * views,))``: every view as the classifier reads it."""
        x = np.concatenate([self.embedding, self.descriptor], axis=2)
        return x.reshape(-1, x.shape[-1]), np.repeat(self.labels, x.shape[1])

    def with_examples(self, embedding: np.ndarray, descriptor: np.ndarray, labels: np.ndarray,
                      classes: tuple[str, ...], names: tuple[str, ...], info: dict) -> TeachData:
        """This data plus examples' views (as many views a clip; extra views are dropped, missing ones repeated)."""
        v = self.embedding.shape[1]
        pick = np.arange(v) % embedding.shape[1]
        return TeachData(np.concatenate([self.embedding, embedding[:, pick]]),
                         np.concatenate([self.descriptor, descriptor[:, pick]]),
                         np.concatenate([self.labels, labels]).astype(np.int64), classes, self.names + names, info)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TEACH_FILE
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, embedding=self.embedding.astype(np.float16),
                            descriptor=self.descriptor.astype(np.float16), labels=self.labels.astype(np.int16),
                            classes=np.array(self.classes), names=np.array(self.names),
                            info=np.array(json.dumps(self.info)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: str | Path, model_digest: str | None = None) -> TeachData:
        """The directory's teach data; a :class:`ModelError` naming the command that makes it when it is missing,
        unreadable or made from another ``model.keras`` than ``model_digest``."""
        directory = Path(directory)
        path = directory / TEACH_FILE
        remedy = f"run `python -m har teach-data --model {directory}` (it reads the dataset the model was trained on)"
        if not path.is_file():
            raise ModelError(f"{directory.name} has no {TEACH_FILE}, what teaching needs of its training data: "
                             f"{remedy}.")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = cls(z["embedding"].astype(np.float32), z["descriptor"].astype(np.float32),
                           z["labels"].astype(np.int64), tuple(str(c) for c in z["classes"]),
                           tuple(str(n) for n in z["names"]), json.loads(str(z["info"])))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path} is not a readable teach file ({exc}): {remedy}.") from exc
        if model_digest is not None and data.info.get("model_digest") != model_digest:
            raise ModelError(f"{path} was made from another model.keras than {directory.name}'s present one: "
                             f"{remedy}.")
        return data


def make_teach_data(directory: str | Path, data: str | Path, cache_dir: str | Path | None = None,
                    progress: Progress = silent) -> TeachData:
    """Compute and save ``directory``'s :data:`TEACH_FILE` from its training and validation groups in ``data``
    (the dataset it was trained on): each clip as served and mirrored, through the served per-frame half."""
    from har.data.dataset import cached_frames, clips_of, default_cache_dir, index_dataset
    from har.modeldir import load_model, resolve_model_dir
    from har.serve.export import keras_digest
    from har.serve.recognizer import Recognizer
    from har.teaching.embedding import embed, embedder

    directory = resolve_model_dir(directory)
    rec = Recognizer(directory, runtime="auto")
    model, config = load_model(directory)
    embed_model = embedder(model, config.size)
    index = index_dataset(data)
    missing = sorted(set(config.classes) - set(index.classes))
    if missing:
        raise ModelError(f"{data} lacks classes of {directory.name}: {', '.join(missing)}; give the dataset it was "
                         "trained on.")
    groups = config.split.get("train", []) + config.split.get("validation", [])
    clips = clips_of(index, groups) if groups else list(index.clips)
    if not clips:
        raise ModelError(f"None of {directory.name}'s training groups is in {data}.")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    embs, descs = [], []
    for i, clip in enumerate(clips):
        frames = cached_frames(clip.path, config.sampling, cache)  # (frames, size, size, 3) uint8, as served
        views = np.stack([frames, frames[:, :, ::-1]])  # served, mirrored
        features = rec.frame_features(views.reshape(-1, *frames.shape[1:]))
        e, d = embed(embed_model, features.reshape(len(views), config.frames, *features.shape[1:]))
        embs.append(e)
        descs.append(d)
        progress((i + 1) / len(clips), f"{directory.name}: {i + 1} of {len(clips)} training clips")
    labels = np.array([config.classes.index(c.label) for c in clips])
    info = {"data": Path(data).name, "clips": len(clips), "views": list(VIEWS),
            "model_digest": keras_digest(directory), "runtime": rec.runtime, "precision": rec.precision,
            "command": f"python -m har teach-data --model {directory.name} --data {Path(data).name}"}
    out = TeachData(np.stack(embs), np.stack(descs), labels, tuple(config.classes),
                    tuple(c.group for c in clips), info)
    out.save(directory)
    log.info("%s: %s of %d clips x %d views", directory.name, TEACH_FILE, len(clips), len(VIEWS))
    return out

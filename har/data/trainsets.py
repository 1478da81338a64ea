"""The data of one training run: the group-aware split and what training reads of each clip, cached.

Frames for the presets that train their whole network (``frames * DENSE`` per clip, for position jitter), or the
frozen encoder's features of every clip's views (:mod:`har.data.features`) for the imagenet preset, which trains only
its temporal part; and the shuffled, augmented batches a run trains on. ``opts`` is a
:class:`har.train.options.TrainOptions`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from har.config import Sampling
from har.errors import HarError

log = logging.getLogger(__name__)


def frozen(opts) -> bool:
    """True when the run trains on cached encoder features (the imagenet preset: its encoder is frozen)."""
    return opts.preset == "imagenet"


@dataclass
class TrainData:
    """The split and the cached inputs of one run: training and validation clips' dense frames (candidates per
    segment, for position jitter) or, for the imagenet preset, their views' encoder features; test clips are loaded
    later, as served."""

    index: object  # har.data.dataset.DatasetIndex
    split: dict[str, list[str]]  # "train"/"validation"/"test" -> group keys
    parts: dict[str, list]  # the same -> clips
    x_train: np.ndarray  # (n, frames * DENSE, size, size, 3) uint8, or (n, VIEWS, frames, h, w, C) float16
    x_val: np.ndarray
    y_train: np.ndarray  # (n,) int class indices
    y_val: np.ndarray
    durations: list[float]  # seconds of each training clip

    @classmethod
    def load(cls, opts, build) -> TrainData:
        from har.data import augment
        from har.data.dataset import class_counts, clip_durations, clips_of, index_dataset, load_frames, split_groups

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
        if frozen(opts):  # encoder outputs of every clip's views, (n, VIEWS, frames, h, w, C) float16
            from har.data.dataset import default_cache_dir
            from har.data.features import features_of

            model = build(opts, len(index.classes))
            cache = opts.cache_dir or default_cache_dir()
            sampling = Sampling(opts.frames, opts.size)
            x_train = features_of(parts["train"], model, sampling, opts.min_window_s, cache, desc="train features")
            x_val = features_of(parts["validation"], model, sampling, opts.min_window_s, cache,
                                desc="validation features")
        else:
            dense = Sampling(opts.frames * augment.DENSE, opts.size)
            x_train = load_frames(parts["train"], dense, opts.cache_dir, desc="train frames")
            x_val = load_frames(parts["validation"], dense, opts.cache_dir, desc="validation frames")
        return cls(index, split, parts, x_train, x_val, index.labels(parts["train"]),
                   index.labels(parts["validation"]), clip_durations(parts["train"]))


def train_dataset(opts, x: np.ndarray, y: np.ndarray, classes: int, replicas: int = 1):
    """Shuffled, augmented batches (mixed up with ``opts.mixup``: soft labels). A last batch of fewer clips than
    ``replicas`` is left out of each epoch: split across them, it would give one an empty batch, which fails."""

    from har.data import augment
    from har.data.dataset import make_dataset

    n = opts.frames
    drop = 0 < len(x) % opts.batch_size < replicas
    if frozen(opts):
        from har.data.features import view_dataset

        ds = view_dataset(x, y, opts.batch_size, opts.seed, drop_remainder=drop)
    else:
        ds = make_dataset(x, y, opts.batch_size, shuffle_seed=opts.seed,
                          map_fn=lambda x, s: augment.augment_clip(x, s, n), drop_remainder=drop)
    return augment.mixup(ds, classes, opts.mixup, opts.seed) if opts.mixup > 0 else ds

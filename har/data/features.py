"""Training views of clips through a frozen frame encoder, computed once and cached (the imagenet presets).

The encoder of the imagenet presets is frozen, so what training needs of a clip is its encoder output. Each clip
gets :data:`VIEWS` views of ``frames`` frames, each encoded once (``(views, frames, h, w, C)`` float16) and kept in
``<cache>/features/`` keyed by the file's content, the encoder and everything that changes a view:

* view 0: the clip as served (:func:`har.media.video.sample_clip`'s frames, no augmentation): validation and test read
it;
* views 1..:data:`WHOLE_VIEWS`: :func:`har.data.augment.augment_clip` over the whole clip (position jitter, crop, flip,
  colour);
* the other views: temporal crops: the frames spread over a random sub-span of the clip, from
  ``min_window_s`` seconds to the whole clip, with the same spatial and colour augmentation, so that the timeline's
  short windows are in distribution.

Training then fits only the temporal part (:func:`har.models.builders.temporal_head`) on these, a random view per clip
and
epoch; the trained weights move into the whole model by layer name. Views are seeded per clip (its content digest)
and view, so two runs and both architectures see the same draws.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from har.config import Sampling

log = logging.getLogger(__name__)

WHOLE_VIEWS = 4  # augmented views over the whole clip
CROP_VIEWS = 4  # augmented temporal crops
VIEWS = 1 + WHOLE_VIEWS + CROP_VIEWS
DENSE_PER_FRAME = 6  # dense candidates per sampled frame for the views (a 2-s crop of a 7-s clip: 34 frames)
VERSION = "v1"  # of the views' recipe: bump when it changes


def encoder_digest(encoder) -> str:
    """Short digest of a frame encoder's weights (the cache must not mix encoders)."""
    h = hashlib.blake2b(digest_size=8)
    for w in encoder.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def frame_encoder(model):
    """The whole model's frozen encoder as a per-frame model: uint8 ``(n, size, size, 3)`` -> maps ``(n, h, w, C)``,
    the model's own rescaling in front (the layers of ``model``, shared, not copied)."""
    import keras

    size = model.input.shape[2]
    x = inputs = keras.Input((size, size, 3), dtype="uint8")
    x = model.get_layer("rescale")(x)
    return keras.Model(inputs, model.get_layer("encoder").layer(x, training=False))


def clip_views(dense: np.ndarray, served: np.ndarray, duration_s: float, min_window_s: float, seed: int):
    """uint8 ``(VIEWS, frames, H, W, 3)``: view 0 = ``served``, then the whole-clip views and the crops of the
    ``dense`` stack (``frames * DENSE_PER_FRAME`` frames at equal intervals over the clip)."""
    import tensorflow as tf

    from har.data import augment

    frames = served.shape[0]
    n = dense.shape[0]
    if duration_s > 0 and min_window_s > 0:
        min_len = min(n, max(frames, math.ceil(n * min_window_s / duration_s)))
    else:
        min_len = n
    x = tf.constant(dense)
    views = [served]
    for v in range(1, VIEWS):
        s = tf.constant([seed, v], tf.int64)
        seeds = tf.random.split(s, 9)
        crop = v > WHOLE_VIEWS
        pos = augment.crop_indices(n, frames, min_len if crop else n, seeds[0])
        views.append(augment.augment_frames(tf.gather(x, pos), seeds).numpy())
    return np.stack(views)


def clip_seed(digest: str) -> int:
    return int(digest[:8], 16)


def features_of(clips: Sequence, model, sampling: Sampling, min_window_s: float, cache_dir: Path,
                desc: str = "features") -> np.ndarray:
    """float16 ``(clips, VIEWS, frames, h, w, C)``: every clip's views through ``model``'s frozen encoder, from the
    cache where they are, encoded (and cached) where not."""
    from har.data.dataset import cached_frames, file_digest
    from har.media.video import probe

    encoder = frame_encoder(model)
    tag = f"{encoder_digest(encoder)}-f{sampling.frames}-s{sampling.size}-w{min_window_s:g}-{VERSION}"
    target = Path(cache_dir) / "features"
    target.mkdir(parents=True, exist_ok=True)
    dense = Sampling(sampling.frames * DENSE_PER_FRAME, sampling.size)
    out = []
    done = 0
    for i, clip in enumerate(clips):
        digest = file_digest(clip.path)
        path = target / f"{digest}-{tag}.npy"
        if path.is_file():
            try:
                out.append(np.load(path))
                continue
            except (OSError, ValueError):
                pass  # a torn write: encode again
        views = clip_views(cached_frames(clip.path, dense, cache_dir), cached_frames(clip.path, sampling, cache_dir),
                           probe(clip.path).duration_s, min_window_s, clip_seed(digest))
        maps = encoder.predict(views.reshape(-1, *views.shape[2:]), batch_size=60, verbose=0)
        arr = maps.reshape(VIEWS, sampling.frames, *maps.shape[1:]).astype(np.float16)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
        out.append(arr)
        done += 1
        if done % 25 == 0:
            log.info("%s: encoded %d clips (%d of %d done)", desc, done, i + 1, len(clips))
    log.info("%s: %d clips, %d encoded now, %d from the cache", desc, len(clips), done, len(clips) - done)
    return np.stack(out)


def view_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, drop_remainder: bool = False):
    """Shuffled training batches of cached features ``(n, VIEWS, ...)``: each clip shows one of its augmented views
    (1..), drawn anew every epoch, as training on frames shows a fresh augmentation every epoch."""
    import tensorflow as tf

    from har.data.dataset import make_dataset

    views = x.shape[1]

    def view(clip, s):
        return tf.cast(tf.gather(clip, tf.random.stateless_uniform((), s, 1, views, dtype=tf.int32)), tf.float32)

    return make_dataset(x, y, batch_size, shuffle_seed=seed, map_fn=view, drop_remainder=drop_remainder)


def served_dataset(x: np.ndarray, y: np.ndarray, batch_size: int):
    """Evaluation batches of view 0 (the clips as served) of cached features ``(n, VIEWS, ...)``."""
    import tensorflow as tf

    from har.data.dataset import make_dataset

    return make_dataset(x[:, 0], y, batch_size, map_fn=lambda clip: tf.cast(clip, tf.float32))

"""On-the-fly augmentation that fits video: one random draw per clip, applied to all of its frames.

Training reads a dense cache of ``frames * DENSE`` frames per clip (``DENSE`` candidates per sampling segment);
``jitter`` picks one candidate per segment at random, ``centre`` picks the middle one, which is exactly the frame
:func:`har.media.video.sample_clip` takes with ``frames`` frames (segment centres), so evaluation sees what serving
sees.
All randomness is stateless and seeded per element, so a run is reproducible given its seed.
"""

from __future__ import annotations

import tensorflow as tf

DENSE = 3  # candidate frames per sampling segment in the training cache


def centre(dense: tf.Tensor, frames: int) -> tf.Tensor:
    """(frames*DENSE, H, W, 3) -> (frames, H, W, 3): the segment centres (``sample_clip``'s frames)."""
    return tf.gather(dense, tf.range(frames) * DENSE + DENSE // 2)


def augment_clip(dense: tf.Tensor, seed: tf.Tensor, frames: int, min_area: float = 0.35) -> tf.Tensor:
    """One augmented clip, uint8 ``(frames, H, W, 3)``, from a dense uint8 ``(frames*DENSE, H, W, 3)`` stack.

    Frame-position jitter within each segment, a random crop covering ``min_area``..1 of the frame (aspect
    0.75..1.33) resized back, horizontal flip, brightness, contrast and saturation, and now and then grey: the same
    draw for every frame of the clip. Clips of one UCF group share a background, so the model must not lean on
    exact colours and framing; these are what differ between groups. ``seed`` is a shape-(2,) int tensor.
    """
    seeds = tf.random.split(tf.cast(seed, tf.int64), 9)
    pick = tf.random.stateless_uniform((frames,), seeds[0], 0, DENSE, dtype=tf.int32)
    return augment_frames(tf.gather(dense, tf.range(frames) * DENSE + pick), seeds, min_area)


def crop_indices(dense_len: int, frames: int, min_len: int, seed: tf.Tensor) -> tf.Tensor:
    """Positions of ``frames`` frames in a dense stack of ``dense_len``: a temporal crop. A random sub-span of
    ``min_len``..``dense_len`` dense frames (``min_len >= frames``, so no frame repeats), split into ``frames``
    equal segments, one random frame in each (the whole stack when ``min_len == dense_len``: position jitter)."""
    s = tf.random.split(tf.cast(seed, tf.int64), 3)
    length = tf.random.stateless_uniform((), s[0], min_len, dense_len + 1, dtype=tf.int32)
    start = tf.random.stateless_uniform((), s[1], 0, dense_len - length + 1, dtype=tf.int32)
    u = tf.random.stateless_uniform((frames,), s[2], 0.0, 1.0)
    pos = (tf.cast(tf.range(frames), tf.float32) + u) * tf.cast(length, tf.float32) / frames
    return start + tf.minimum(tf.cast(pos, tf.int32), length - 1)


def augment_frames(x: tf.Tensor, seeds: tf.Tensor, min_area: float = 0.35) -> tf.Tensor:
    """The spatial and colour part of :func:`augment_clip` on chosen frames ``(frames, H, W, 3)`` uint8, one draw for
    the clip (``seeds``: 9 of ``tf.random.split``; the first is not used here)."""
    frames = tf.shape(x)[0]
    size = tf.shape(x)[1]
    x = tf.cast(x, tf.float32)  # (frames, H, W, 3) in 0..255

    area = tf.random.stateless_uniform((), seeds[1], min_area, 1.0)
    aspect = tf.exp(tf.random.stateless_uniform((), seeds[2], tf.math.log(0.75), tf.math.log(4 / 3)))
    h = tf.minimum(tf.sqrt(area / aspect), 1.0)
    w = tf.minimum(tf.sqrt(area * aspect), 1.0)
    y0 = tf.random.stateless_uniform((), seeds[3], 0.0, 1.0) * (1.0 - h)
    x0 = tf.random.stateless_uniform((), seeds[4], 0.0, 1.0) * (1.0 - w)
    box = tf.reshape(tf.stack([y0, x0, y0 + h, x0 + w]), (1, 4))
    x = tf.image.crop_and_resize(x, tf.tile(box, (frames, 1)), tf.range(frames), tf.stack([size, size]))

    flip = tf.random.stateless_uniform((), seeds[5], 0.0, 1.0) < 0.5
    x = tf.cond(flip, lambda: tf.reverse(x, axis=[2]), lambda: x)

    bc = tf.random.stateless_uniform((3,), seeds[6], -1.0, 1.0)
    brightness = 0.15 * 255.0 * bc[0]
    contrast = 1.0 + 0.3 * bc[1]
    saturation = 1.0 + 0.4 * bc[2]
    grey = tf.reduce_mean(x, axis=-1, keepdims=True)  # (frames, H, W, 1)
    to_grey = tf.random.stateless_uniform((), seeds[7], 0.0, 1.0) < 0.1
    saturation = tf.where(to_grey, 0.0, saturation)
    x = grey + (x - grey) * saturation
    mean = tf.reduce_mean(x)
    x = (x - mean) * contrast + mean + brightness
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def mixup(ds: tf.data.Dataset, num_classes: int, alpha: float, seed: int) -> tf.data.Dataset:
    """Mixup (Zhang et al. 2018) on a batched ``(uint8 clips, int labels)`` dataset: each clip blended with the
    batch's clip in mirrored position by a Beta(alpha, alpha) weight, labels one-hot and blended alike.
    Frame differences are linear, so the model's motion channels mix the same way. Stateless, seeded per batch."""

    def mix(xy, s):
        x, y = xy
        y = tf.one_hot(y, num_classes)
        s1, s2 = tf.unstack(tf.random.split(tf.cast(s, tf.int64), 2))
        b = tf.shape(x)[0]
        g1 = tf.random.stateless_gamma((b,), s1, alpha)
        g2 = tf.random.stateless_gamma((b,), s2, alpha)
        lam = g1 / (g1 + g2)  # Beta(alpha, alpha)
        lam = tf.maximum(lam, 1.0 - lam)  # the clip keeps the larger share: its own label dominates
        xf = tf.cast(x, tf.float32)
        lx = tf.reshape(lam, (-1, 1, 1, 1, 1))
        x = tf.cast(tf.round(lx * xf + (1.0 - lx) * tf.reverse(xf, [0])), tf.uint8)
        ly = tf.reshape(lam, (-1, 1))
        return x, ly * y + (1.0 - ly) * tf.reverse(y, [0])

    seeds = tf.data.Dataset.random(seed=seed + 1).batch(2)
    return tf.data.Dataset.zip(ds, seeds).map(mix, num_parallel_calls=tf.data.AUTOTUNE)

"""har.data.augment: seeded, per-clip augmentation; the centre view is the served sampling; mixup blends clips and
labels by the same weight."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from har.data import augment


def _dense(n_clips: int, frames: int = 4, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n_clips, frames * augment.DENSE, size, size, 3), dtype=np.uint8)


def test_centre_takes_the_middle_candidate_of_each_segment():
    dense = _dense(1)[0]
    got = augment.centre(tf.constant(dense), 4).numpy()
    np.testing.assert_array_equal(got, dense[augment.DENSE // 2 :: augment.DENSE])


def test_augment_clip_is_reproducible_given_its_seed_and_varies_with_it():
    dense = tf.constant(_dense(1)[0])
    a = augment.augment_clip(dense, tf.constant([1, 2]), 4).numpy()
    b = augment.augment_clip(dense, tf.constant([1, 2]), 4).numpy()
    c = augment.augment_clip(dense, tf.constant([3, 4]), 4).numpy()
    assert a.shape == (4, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mixup_blends_each_clip_with_its_mirror_by_the_weight_its_label_gets():
    n, k = 6, 3
    x = np.stack([np.full((2, 4, 4, 3), 40 * i, np.uint8) for i in range(n)])  # clip i is flat grey 40*i
    y = np.array([0, 1, 2, 0, 1, 2], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(n)
    (mx, my), = list(augment.mixup(ds, k, alpha=0.4, seed=0).as_numpy_iterator())
    (mx2, my2), = list(augment.mixup(ds, k, alpha=0.4, seed=0).as_numpy_iterator())
    np.testing.assert_array_equal(mx, mx2)  # seeded
    np.testing.assert_array_equal(my, my2)
    assert mx.shape == x.shape and mx.dtype == np.uint8 and my.shape == (n, k)
    np.testing.assert_allclose(my.sum(axis=1), 1.0, atol=1e-6)
    for i in range(n):
        j = n - 1 - i  # the mirrored partner
        lam = my[i, y[i]] if y[i] != y[j] else 1.0
        if y[i] != y[j]:
            assert 0.5 <= lam <= 1.0  # a clip keeps the larger share
            assert abs(my[i, y[j]] - (1 - lam)) < 1e-6
            np.testing.assert_allclose(mx[i], np.round(lam * 40 * i + (1 - lam) * 40 * j), atol=1)
    assert not np.array_equal(mx, x)  # something was mixed

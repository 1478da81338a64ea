"""har.models.backbone: the ImageNet frame encoder of the imagenet presets is the converted checkpoint, every layer of
it,
and stays frozen through training."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from har.errors import ModelError
from har.modeldir import load_model
from har.models import backbone
from har.models import builders as models


def _archive() -> dict[str, np.ndarray]:
    with np.load(backbone.WEIGHTS) as f:
        return {k: f[k] for k in f.files}


def archive_keys_used(enc, arrays) -> set[str]:
    """The archive's keys whose arrays ``enc``'s layers hold, each checked equal (as float32) to its layer weight."""
    used = set()
    for layer in enc.layers:
        if not layer.weights:
            continue
        prefix, kind = backbone._names(layer.name)
        for key, weight in zip(backbone.KEYS[kind], layer.get_weights(), strict=True):
            np.testing.assert_array_equal(weight, arrays[f"{prefix}.{key}"].astype(np.float32))
            used.add(f"{prefix}.{key}")
    return used


def test_every_weight_of_the_encoder_comes_from_the_archive_and_none_is_left_over():
    arrays = _archive()
    enc = backbone.encoder(blocks=11)  # all the archive holds
    backbone.load_imagenet(enc)
    used = archive_keys_used(enc, arrays)
    assert used == set(arrays)  # 165 arrays: the stem and blocks 0-10, nothing unread, nothing missing
    assert enc.output.shape[1:] == (4, 4, 112)


def test_the_presets_use_the_first_stages_frozen():
    enc = backbone.pretrained_encoder(models.ENCODER_BLOCKS)
    assert not enc.trainable and not enc.trainable_weights
    assert enc.output.shape[1:] == (4, 4, 80)
    stem = backbone.encoder(1)
    assert not np.array_equal(stem.get_layer("stem_conv").get_weights()[0],
                              enc.get_layer("stem_conv").get_weights()[0])  # random init vs the checkpoint


def test_a_missing_or_foreign_archive_is_a_clear_error(tmp_path):
    enc = backbone.encoder(2)
    with pytest.raises(ModelError, match="missing or unreadable.*nowhere.npz"):
        backbone.load_imagenet(enc, tmp_path / "nowhere.npz")
    arrays = _archive()
    arrays["_blocks.1._depthwise_conv.weight"] = np.zeros((5, 5, 96, 1), np.float32)  # a 3x3 kernel's slot
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(ModelError, match="b1_dw"):
        backbone.load_imagenet(enc, tmp_path / "other.npz")


@pytest.mark.parametrize("arch", models.ARCHS)
def test_training_leaves_the_encoder_as_the_checkpoint(arch, tiny_dataset, tmp_path):
    out = tmp_path / arch
    done = run_cli("train", "--arch", arch, "--preset", "imagenet", "--data", str(tiny_dataset), "--out", str(out),
                   "--epochs", "1", "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"),
                   "--size", "64", "--encoder-blocks", str(models.ENCODER_BLOCKS), "--min-window-s", "0", "--no-refit")
    assert done.returncode == 0, done.stderr[-3000:]
    model, config = load_model(out)
    assert config.preset == "imagenet"
    encoder = model.get_layer("encoder").layer
    fresh = backbone.pretrained_encoder(models.ENCODER_BLOCKS)
    for a, b in zip(encoder.weights, fresh.weights, strict=True):  # batch-norm statistics included
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert model.trainable_weights and not {id(w) for w in encoder.weights} & {id(w) for w in model.trainable_weights}

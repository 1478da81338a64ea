"""har.models.backbone: the ImageNet frame encoder of the imagenet presets is the converted checkpoint, every layer of
it, and stays frozen through training; the imagenet recipe trained end to end."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from har import Recognizer
from har.config import ModelConfig
from har.data.dataset import clips_of, index_dataset
from har.data.features import VIEWS
from har.errors import ModelError
from har.media.video import sample_clip
from har.modeldir import MODEL_FILE, load_model
from har.models import backbone
from har.models import builders as models
from har.openset.score import OPENSET_FILE, Familiarity
from har.serve.backends import serving_sessions
from har.serve.export import DIGEST_KEY, FRAME_FILE, HEAD_FILE, ONNX_FILE, keras_digest


def _archive() -> dict[str, np.ndarray]:
    with np.load(backbone.WEIGHTS) as f:
        return {k: f[k] for k in f.files}


# The converted archive keeps PyTorch's names: "_blocks.<i>.<module>.<array>" ("_conv_stem", "_bn0" outside the
# blocks); Keras names an array of a layer by what it is. An array of block i belongs in a layer "b<i>_...".
TORCH_ARRAY = {"kernel": "weight", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
               "moving_variance": "running_var", "bias": "bias"}


def archive_keys_used(enc, arrays) -> set[str]:
    """The archive's keys whose arrays ``enc``'s weights hold: each weight equal (as float32) to exactly one array
    of its own kind in its own block, and no array held by two weights."""
    used: set[str] = set()
    for weight in enc.weights:
        layer, kind = weight.path.split("/")[-2:]
        block = f"_blocks.{layer[1:].split('_')[0]}." if layer.startswith("b") and layer[1].isdigit() else None
        value = np.asarray(weight)
        mine = [k for k in arrays if k.endswith("." + TORCH_ARRAY[kind])
                and (k.startswith(block) if block else not k.startswith("_blocks."))]
        same = [k for k in mine if arrays[k].shape == value.shape
                and np.array_equal(arrays[k].astype(np.float32), value)]
        assert len(same) == 1, (weight.path, same)
        assert same[0] not in used, (weight.path, same)
        used.add(same[0])
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


def assert_encoder_is_the_checkpoint(model, config) -> None:
    """The trained model's frame encoder holds the ImageNet checkpoint's weights, batch-norm statistics included,
    and none of them is trainable."""
    encoder = model.get_layer("encoder").layer
    fresh = backbone.pretrained_encoder(config.encoder_blocks, config.size, variant=config.encoder)
    for a, b in zip(encoder.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert model.trainable_weights and not {id(w) for w in encoder.weights} & {id(w) for w in model.trainable_weights}


def test_the_imagenet_recipe_trains_end_to_end(tiny_dataset, tmp_path, cli):
    """The shipped LRCN's recipe (``train --like models/lrcn``) for one epoch on a tiny dataset, at 32 px on the
    encoder's first 8 blocks and without the refit phase (tests/test_train.py has it) to be quick: the encoder stays
    the checkpoint; the ONNX halves serve the model's numbers; the open-set score is fitted on every view of every
    non-test clip and on clips of other actions (three of the shared ones, two clips each), recorded and served."""
    others = tmp_path / "others"
    for name in ("Billiards", "BenchPress", "Biking"):
        (others / name).mkdir(parents=True)
        for clip in sorted((REPO.parent / "shared" / "data" / "other-actions" / name).glob("*.mp4"))[:2]:
            (others / name / clip.name).symlink_to(clip)
    out = tmp_path / "lrcn"
    done = cli("train", "--like", str(REPO / "models" / "lrcn"), "--data", str(tiny_dataset), "--out", str(out),
               "--epochs", "1", "--batch-size", "4", "--size", "32", "--encoder-blocks", "8", "--no-refit",
               "--others", str(others))
    assert done.returncode == 0, done.stderr[-3000:]
    model, config = load_model(out)
    shipped = ModelConfig.load(REPO / "models" / "lrcn")
    recipe = ("arch", "preset", "frames", "encoder", "min_window_s")
    assert [getattr(config, k) for k in recipe] == [getattr(shipped, k) for k in recipe]
    assert (config.size, config.encoder_blocks, config.epochs) == (32, 8, 1) and "refit" not in config.hyper
    assert_encoder_is_the_checkpoint(model, config)
    names = {p.name for p in out.iterdir()}
    assert {MODEL_FILE, "config.json", "history.csv", "metrics.json", FRAME_FILE, HEAD_FILE, OPENSET_FILE} <= names
    assert ONNX_FILE not in names and "_resume" not in names

    sessions = serving_sessions(out, "onnx")  # the halves, made from this model.keras
    assert sorted(sessions) == [FRAME_FILE, HEAD_FILE]
    assert {s.get_modelmeta().custom_metadata_map[DIGEST_KEY] for s in sessions.values()} == {keras_digest(out)}
    by_keras, by_onnx = Recognizer(out, runtime="keras"), Recognizer(out, runtime="onnx")
    index = index_dataset(tiny_dataset)
    test = clips_of(index, config.split["test"])
    clips = np.stack([sample_clip(c.path, config.frames, config.size) for c in test])
    np.testing.assert_allclose(by_onnx.probabilities(clips), by_keras.probabilities(clips), atol=1e-4)

    familiarity = Familiarity.load(out)
    known = clips_of(index, config.split["train"] + config.split["validation"])
    assert familiarity is not None and config.openset == familiarity.info
    assert familiarity.info["threshold_from"] == len(known) == 12  # no test-group clip
    assert familiarity.info["bank"] == len(familiarity.bank) == VIEWS * len(known)
    assert np.isfinite(familiarity.threshold)
    assert familiarity.gate is not None and config.hyper["others"] == "others"
    assert familiarity.info["others"]["classes"] == ["BenchPress", "Biking", "Billiards"]
    assert familiarity.gate.others.shape == (6 * VIEWS, familiarity.mean.shape[0])
    assert [r["left_out"] for r in familiarity.info["leave_other_class_out"]["per_class"]] == \
        familiarity.info["others"]["classes"]
    for rec in (by_keras, by_onnx):
        pred = rec.classify(test[0].path)
        assert pred.familiarity is not None and pred.familiar_above == pytest.approx(familiarity.threshold)
        assert pred.to_dict()["open_set"] == "familiarity"


def test_training_the_convlstm_leaves_the_encoder_as_the_checkpoint(tiny_dataset, tmp_path, cli):
    out = tmp_path / "convlstm"  # 8 frames of 32 px: what training does to the encoder, not how well it learns
    done = cli("train", "--arch", "convlstm", "--preset", "imagenet", "--data", str(tiny_dataset), "--out", str(out),
               "--epochs", "1", "--batch-size", "4", "--size", "32", "--frames", "8",
               "--encoder-blocks", str(models.ENCODER_BLOCKS),
               "--min-window-s", "0", "--no-refit", "--no-export", "--no-openset")
    assert done.returncode == 0, done.stderr[-3000:]
    model, config = load_model(out)
    assert (config.arch, config.preset) == ("convlstm", "imagenet")
    assert_encoder_is_the_checkpoint(model, config)
    assert not {FRAME_FILE, HEAD_FILE, ONNX_FILE, OPENSET_FILE} & {p.name for p in out.iterdir()}

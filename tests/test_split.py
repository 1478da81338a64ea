"""The per-frame split of issue 16's models (the whole Lite0 as frame encoder) on both runtimes: where each
architecture is cut, ``frame.onnx`` + ``head.onnx`` instead of a whole ``model.onnx``, halves that agree with the
whole model, timelines that compute each grid frame once (TensorFlow and ONNX Runtime alike) and give the numbers
of whole windows, and every clip's per-frame features beside its probabilities."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import REPO

from har import Recognizer
from har.config import ModelConfig
from har.data.features import frame_encoder
from har.errors import ModelError
from har.media.video import count_frames, probe, sample_clip
from har.modeldir import MODEL_FILE, load_model
from har.models import builders as models
from har.serve.backends import Backend, onnx_sessions, serving_sessions
from har.serve.export import DIGEST_KEY, FRAME_FILE, HEAD_FILE, ONNX_FILE, export_onnx, keras_digest
from har.serve.surgery import split_per_frame
from har.serve.timeline import plan_windows

CLASSES = ("Archery", "BasketballDunk", "HorseRace", "PlayingPiano", "PlayingViolin", "Surfing")
# The LRCN at 64 px to keep it quick; the ConvLSTM at the shipped 128 px, the larger of the two model directories.
SIZES = {"lrcn": 64, "convlstm": 128}


def names(model) -> list[str]:
    """The layers of a half, without its input and the frame model's reshapes (to windows of one frame and back)."""
    return [layer.name for layer in model.layers if type(layer).__name__ not in ("InputLayer", "Reshape")]

FEATURES = {"lrcn": (320,), "convlstm": (4, 4, 320)}  # one frame's at SIZES: the frozen encoder's (pooled or maps)
MAX_DIR_BYTES = 30_000_000  # a model directory's budget


def model_dir(directory, arch: str, size: int):
    """An untrained issue-16 model (frozen ImageNet Lite0, all 16 blocks) saved with a valid config.json."""
    directory.mkdir(parents=True)
    models.build(arch, "imagenet", len(CLASSES), 20, size, encoder_blocks=16).save(directory / MODEL_FILE)
    ModelConfig(arch=arch, preset="imagenet", classes=CLASSES, frames=20, size=size, encoder="lite0",
                encoder_blocks=16, whole_clip_window_s=2.0, whole_clip_hop_s=0.5).save(directory)
    return directory


@pytest.fixture(scope="module", params=sorted(SIZES))
def exported(request, tmp_path_factory):
    """``(arch, directory)``: a model directory exported as the shipped ones will be."""
    arch = request.param
    d = model_dir(tmp_path_factory.mktemp("split") / arch, arch, SIZES[arch])
    (d / ONNX_FILE).write_bytes(b"an earlier export's whole copy")  # the export replaces the other layout
    assert export_onnx(d) == (d / FRAME_FILE, d / HEAD_FILE)
    return arch, d


@pytest.fixture(scope="module")
def served(exported):
    """``{runtime: Recognizer}`` on the exported directory, sharing frames (the default)."""
    _, d = exported
    return {runtime: Recognizer(d, runtime=runtime) for runtime in ("keras", "onnx")}


@pytest.fixture(scope="module")
def unshared(exported):
    """The same, always run whole per window (``share_frames=False``)."""
    _, d = exported
    return {runtime: Recognizer(d, runtime=runtime, share_frames=False) for runtime in ("keras", "onnx")}


def real_clips(ucf, size: int) -> np.ndarray:
    """One real clip of each class, ``(6, 20, size, size, 3)`` uint8."""
    return np.stack([sample_clip(sorted((ucf / c).glob("*.mp4"))[-1], 20, size) for c in CLASSES])


@pytest.mark.parametrize("arch", sorted(SIZES))
def test_each_architecture_is_cut_after_its_last_per_frame_layer_into_halves_that_agree(arch):
    model = models.build(arch, "imagenet", 6, 20, 64, encoder_blocks=16)
    frame_model, head = split_per_frame(model, 64)
    # the half ends where training begins: the frozen encoder's maps, pooled for the LRCN (gap has no weights)
    assert names(frame_model) == {"lrcn": ["rescale", "encoder", "gap"], "convlstm": ["rescale", "encoder"]}[arch]
    # the LRCN's head reads each vector and the previous one (Cropping1D); the ConvLSTM's starts with its trained
    # per-frame layers (batch norm, the 1x1 "reduce"), then the recurrence
    assert names(head)[:2] == {"lrcn": ["later", "earlier"], "convlstm": ["bn_features", "reduce"]}[arch]
    x = np.random.default_rng(0).integers(0, 256, (2, 20, 64, 64, 3), np.uint8)
    features = np.asarray(frame_model(x.reshape(-1, 64, 64, 3), training=False))
    assert features.shape == (40, *{"lrcn": (320,), "convlstm": (2, 2, 320)}[arch])
    # the same features as training's cache and the open-set bank (har.data.features' encoder maps; pooled for the LRCN)
    maps = np.asarray(frame_encoder(model)(x.reshape(-1, 64, 64, 3), training=False))
    np.testing.assert_allclose(features, maps.mean(axis=(1, 2)) if arch == "lrcn" else maps, rtol=1e-5, atol=1e-5)
    split = head(features.reshape(2, 20, *features.shape[1:]), training=False)
    np.testing.assert_allclose(split, model(x, training=False), atol=1e-5)


def test_the_shipped_convlstm_splits_after_its_encoder_and_a_trained_chain_keeps_a_per_frame_batch_norm():
    import keras
    from keras import layers

    shipped, config = load_model(REPO / "models" / "convlstm")  # whole Lite0 at 128 px, BN and 1x1 reduce trained
    size = config.size
    frame_model, head = split_per_frame(shipped, size)
    assert names(frame_model) == ["rescale", "encoder"] and names(head)[:3] == ["bn_features", "reduce", "drop_maps"]
    assert frame_model.output_shape == (None, 4, 4, 320)
    x = np.random.default_rng(1).integers(0, 256, (2, 20, size, size, 3), np.uint8)
    features = np.asarray(frame_model(x.reshape(-1, size, size, 3), training=False)).reshape(2, 20, 4, 4, 320)
    np.testing.assert_allclose(head(features, training=False), shipped(x, training=False), atol=1e-5)

    # Without a frozen encoder the chain goes on as long as layers act frame by frame: a BatchNormalization over
    # the channels does (fixed statistics when serving), one over the time axis does not (statistics per time
    # step tell frames apart): it ends the chain.
    for axis, cut in ((-1, "per_channel"), (1, "conv")):
        frames = keras.Input((8, 16, 16, 3), dtype="uint8")
        x = layers.TimeDistributed(layers.Conv2D(4, 3), name="conv")(layers.Rescaling(1 / 255)(frames))
        x = layers.BatchNormalization(axis=axis, name={-1: "per_channel", 1: "per_step"}[axis])(x)
        x = layers.ConvLSTM2D(4, 3, name="convlstm")(x)
        model = keras.Model(frames, layers.Dense(2, activation="softmax")(layers.Flatten()(x)))
        frame_model, head = split_per_frame(model, 16)
        assert names(frame_model)[-1] == cut, axis
        clip = np.random.default_rng(2).integers(0, 256, (2, 8, 16, 16, 3), np.uint8)
        features = np.asarray(frame_model(clip.reshape(-1, 16, 16, 3), training=False))
        np.testing.assert_allclose(head(features.reshape(2, 8, *features.shape[1:]), training=False),
                                   model(clip, training=False), atol=1e-5)


def test_the_export_writes_checked_stamped_halves_instead_of_a_whole_copy(exported, served, ucf):
    arch, d = exported
    assert not (d / ONNX_FILE).exists()  # the encoder's weights are stored twice, not three times
    assert sum(p.stat().st_size for p in d.iterdir()) <= MAX_DIR_BYTES
    sessions = serving_sessions(d, "onnx")
    assert sorted(sessions) == [FRAME_FILE, HEAD_FILE]
    assert {s.get_modelmeta().custom_metadata_map[DIGEST_KEY] for s in sessions.values()} == {keras_digest(d)}
    keras_rec, onnx_rec = served["keras"], served["onnx"]
    assert (keras_rec.runtime, onnx_rec.runtime) == ("keras", "onnx")
    assert keras_rec.per_frame and onnx_rec.per_frame
    assert keras_rec.feature_shape == onnx_rec.feature_shape == FEATURES[arch]
    clips = real_clips(ucf, SIZES[arch])
    expected = keras_rec.probabilities(clips)  # the whole Keras model
    assert expected.max() - expected.min() > 0.05  # untrained, but not a uniform answer: the check means something
    np.testing.assert_allclose(onnx_rec.probabilities(clips), expected, atol=1e-4)  # head.onnx(frame.onnx(x))
    frames = clips.reshape(-1, *clips.shape[2:])
    keras_features, onnx_features = keras_rec.frame_features(frames), onnx_rec.frame_features(frames)
    assert keras_features.shape == (len(frames), *FEATURES[arch])
    np.testing.assert_allclose(onnx_features, keras_features, atol=1e-3 * np.abs(keras_features).max())
    window_features = keras_features.reshape(*clips.shape[:2], *FEATURES[arch])
    for rec in (keras_rec, onnx_rec):  # each head on Keras' features agrees too
        np.testing.assert_allclose(rec.head_probabilities(window_features), expected, atol=1e-4)


def test_every_clip_gets_its_per_frame_features_with_its_probabilities_in_one_pass(exported, served, unshared,
                                                                                     ucf):
    arch, _ = exported
    clips = real_clips(ucf, SIZES[arch])
    for rec in served.values():
        features, probs = rec.features_and_probabilities(clips)
        assert features.shape == (6, 20, *FEATURES[arch]) and features.dtype == np.float32
        np.testing.assert_allclose(features.reshape(-1, *FEATURES[arch]),
                                   rec.frame_features(clips.reshape(-1, *clips.shape[2:])), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(probs, rec.probabilities(clips), atol=1e-4)
        empty_features, empty_probs = rec.features_and_probabilities(clips[:0])
        assert empty_features.shape == (0, 20, *FEATURES[arch]) and empty_probs.shape == (0, 6)
    for runtime, whole in unshared.items():  # served whole: no features to give
        features, probs = whole.features_and_probabilities(clips[:2])
        assert features is None and whole.feature_shape == ()
        np.testing.assert_allclose(probs, served[runtime].probabilities(clips[:2]), atol=1e-4)


class Counting(Backend):
    """A real backend, counting how many frames go through the encoder and how many windows through the head."""

    def __init__(self, inner: Backend):
        self.inner, self.runtime = inner, inner.runtime
        self.per_frame, self.feature_shape, self.logits = inner.per_frame, inner.feature_shape, inner.logits
        self.encoded: list[int] = []  # frames per frames() call (the per-frame half)
        self.whole: list[int] = []  # clips per clips() call (the whole model, encoder included)
        self.headed = 0  # windows through the head alone

    def clips(self, x):
        self.whole.append(len(x))
        return self.inner.clips(x)

    def frames(self, x):
        self.encoded.append(len(x))
        return self.inner.frames(x)

    def head_outputs(self, features):
        self.headed += len(features)
        return self.inner.head_outputs(features)


def test_timelines_encode_each_grid_frame_once_on_both_runtimes_and_give_the_whole_windows_numbers(exported, served,
                                                                                                   unshared, ucf):
    arch, _ = exported
    video = sorted((ucf / "Surfing").glob("*.mp4"))[0]
    total, _ = count_frames(video)
    plan = plan_windows(total, probe(video).fps, 20, 2.0, 0.5)
    windows, grid = len(plan.indices), len(np.unique(plan.indices))
    assert windows >= 6 and grid < windows * 20 / 3  # windows overlap: most frames belong to several
    got = {}
    for runtime in ("keras", "onnx"):
        for share in (True, False):
            rec = (served if share else unshared)[runtime]
            assert rec.per_frame is share
            spy = Counting(rec.backend)
            counted = Recognizer.serving(spy, rec.config, arch)
            got[runtime, share] = counted.timeline(video, window_s=2.0, hop_s=0.5)
            if share:  # each grid frame through the encoder once, the head once per window, the whole clip once
                assert (sum(spy.encoded), spy.headed, spy.whole) == (grid, windows, [1])
            else:  # every window through the whole model (and the whole-clip sample)
                assert (spy.encoded, spy.headed, sum(spy.whole)) == ([], 0, windows + 1)
    reference = got["keras", False].window_probs  # the whole Keras model, window by window
    assert reference.shape == (windows, 6)
    for key, timeline in got.items():
        np.testing.assert_allclose(timeline.window_probs, reference, atol=1e-4, err_msg=str(key))
        np.testing.assert_allclose(timeline.clip.probs, got["keras", False].clip.probs, atol=1e-4, err_msg=str(key))
    # on one runtime, sharing changes no number at all beyond float noise
    for runtime in ("keras", "onnx"):
        np.testing.assert_allclose(got[runtime, True].window_probs, got[runtime, False].window_probs, atol=1e-5)


def test_stale_or_missing_halves_are_not_served(exported, tmp_path):
    _, d = exported
    stale = tmp_path / "stale"
    shutil.copytree(d, stale)
    model, _ = load_model(stale)  # retrained since the export
    model.set_weights([w * 0.5 for w in model.get_weights()])
    model.save(stale / MODEL_FILE)
    assert onnx_sessions(stale) is None
    with pytest.raises(ModelError, match=r"^stale has no usable ONNX copy \(frame.onnx and head.onnx, or "):
        Recognizer(stale, runtime="onnx")
    half = tmp_path / "half"
    shutil.copytree(d, half)
    (half / HEAD_FILE).unlink()  # one half alone serves nothing
    assert onnx_sessions(half) is None
    assert Recognizer(half, runtime="auto").runtime == "keras"

"""The int8 per-frame half (frame.int8.onnx, har.serve.quantize) of both shipped models: present, current, within
its stated tolerance of the float half on real clips, served by ``auto`` on a CPU and never when stale or off; and
the timeline's overlapped decoding gives the sequential pass's answer."""

from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from conftest import REPO

import har.serve.backends
from har import Recognizer
from har.config import ModelConfig
from har.data.dataset import clips_of, index_dataset
from har.errors import ModelError
from har.media.video import sample_clip
from har.progress import silent
from har.serve.backends import onnx_providers, onnx_sessions, serving_sessions
from har.serve.export import DIGEST_KEY, FRAME_FILE, keras_digest
from har.serve.quantize import COSINE_KEYS, INT8_FILE, MEAN_COSINE, MIN_COSINE, check_int8, cosines, stamp
from har.serve.timeline import scan

MODELS = ("lrcn", "convlstm")


def onnxruntime():
    """The onnxruntime module, imported as har imports it: once ORT_DISABLE_TELEMETRY is set. Imported with this
    module (at collection), it would start with its telemetry on for the whole session, and its DNS lookups would
    fail another file's test through the no_way_out fixture."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    return ort


@pytest.fixture
def no_gpu(monkeypatch):
    """``auto`` as on a machine without an NVIDIA GPU, whatever this one has."""
    monkeypatch.setattr(har.serve.backends, "gpu_present", lambda: False)


@pytest.fixture(scope="module")
def served(shipped):
    """Each shipped model on its float ONNX halves and on its int8 per-frame half (the session's: loaded once)."""
    return {name: (shipped(name, "onnx"), shipped(name, "onnx-int8")) for name in MODELS}


def test_clips(ucf, config, per_class: int = 1) -> np.ndarray:
    """The first clip of each class's first test group, sampled as served: ``(classes, frames, size, size, 3)``."""
    clips = clips_of(index_dataset(ucf), config.split["test"])
    first = {c.label: c.path for c in reversed(clips)}
    return np.stack([sample_clip(first[label], config.frames, config.size) for label in config.classes])


test_clips.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("name", MODELS)
def test_each_shipped_model_has_a_current_int8_half_within_its_tolerance_on_real_clips(name, served, ucf):
    d = REPO / "models" / name
    meta = onnx_sessions(d, int8=True)[INT8_FILE].get_modelmeta().custom_metadata_map
    assert meta[DIGEST_KEY] == keras_digest(d)
    assert float(meta[COSINE_KEYS[0]]) >= MIN_COSINE and float(meta[COSINE_KEYS[1]]) >= MEAN_COSINE
    float_rec, int8_rec = served[name]
    assert (float_rec.precision, int8_rec.precision) == ("float32", "int8")
    clips = test_clips(ucf, float_rec.config)  # test groups: never calibrated on, never checked on at export
    f_float, p_float, _ = float_rec.features_and_outputs(clips)
    f_int8, p_int8, _ = int8_rec.features_and_outputs(clips)
    cos = cosines(f_float.reshape(-1, *float_rec.feature_shape), f_int8.reshape(-1, *int8_rec.feature_shape))
    assert cos.min() >= MIN_COSINE and cos.mean() >= MEAN_COSINE, (cos.min(), cos.mean())
    assert not np.allclose(f_float, f_int8, atol=1e-4)  # really another half
    assert (p_int8.argmax(axis=1) == p_float.argmax(axis=1)).all()
    assert np.abs(p_int8 - p_float).max() < 0.1


def test_auto_serves_int8_on_a_cpu_and_the_float_halves_elsewhere(no_gpu, monkeypatch):
    d = REPO / "models" / "lrcn"
    assert sorted(serving_sessions(d, "auto")) == sorted([INT8_FILE, "head.onnx"])
    assert sorted(serving_sessions(d, "onnx")) == sorted([FRAME_FILE, "head.onnx"])  # by name: the float halves
    rec = Recognizer("lrcn", runtime="auto")
    assert (rec.runtime, rec.precision) == ("onnx", "int8")
    assert "precision='int8'" in repr(rec)
    monkeypatch.setattr(har.serve.backends, "gpu_present", lambda: True)
    assert serving_sessions(d, "auto") is None  # a GPU: TensorFlow serves, on it
    monkeypatch.setattr(onnxruntime(), "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(har.serve.backends, "gpu_present", lambda: False)
    assert onnx_providers() == ["CPUExecutionProvider"]  # the CUDA package without a GPU: the CPU


def test_the_export_check_refuses_a_bad_quantized_file_and_a_stale_one_is_not_served(ucf, tmp_path, no_gpu,
                                                                                      caplog):
    d = REPO / "models" / "lrcn"
    float_session = onnx_sessions(d)[FRAME_FILE]
    good = onnx_sessions(d, int8=True)[INT8_FILE]
    config = ModelConfig.load(d)
    frames = test_clips(ucf, config)[:2].reshape(-1, config.size, config.size, 3)
    low, mean = check_int8(float_session, good, frames)
    assert low >= MIN_COSINE and mean >= MEAN_COSINE
    # a damaged copy: the last layer's per-channel scales tripled (as a wrong calibration of it would)
    proto = onnx.load(str(d / INT8_FILE))
    last = [init for init in proto.graph.initializer if init.name.endswith("_scale") and len(init.dims) == 1][-1]
    last.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(last) * 3, last.name))
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    bad = onnxruntime().InferenceSession(str(tmp_path / "bad.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(ModelError, match=r"The int8 per-frame half's features differ from the float half's: cosine "
                                         r"0\.\d+ at worst and 0\.\d+ on average over 40 frames \(at least 0\.95 "
                                         r"and 0\.99 needed\); not kept\."):
        check_int8(float_session, bad, frames)

    stale = tmp_path / "stale"
    shutil.copytree(d, stale)
    stamp(stale / INT8_FILE, {DIGEST_KEY: "0" * 64})  # made from another model.keras
    with caplog.at_level("WARNING"):
        rec = Recognizer(stale, runtime="auto")
    assert (rec.runtime, rec.precision) == ("onnx", "float32")  # the float halves serve instead
    assert f"{INT8_FILE} was not made from the present model.keras" in caplog.text
    with pytest.raises(ModelError, match=r"stale has no usable frame\.int8\.onnx made from its model\.keras: run "
                                         r"`python -m har export --model .* --data DATASET`"):
        Recognizer(stale, runtime="onnx-int8")


def test_the_overlapped_timeline_gives_the_sequential_answer(served, wild):
    video = wild / "rowing-commercial.mp4"
    recs = [served[name][1] for name in MODELS]  # both models, one pass, as analyze runs them
    overlapped = scan(video, recs, None, None, 5, silent, overlap=True)
    sequential = scan(video, recs, None, None, 5, silent, overlap=False)
    for a, b in zip(overlapped, sequential, strict=True):
        assert len(a.window_probs) > 50
        np.testing.assert_array_equal(a.window_probs, b.window_probs)
        np.testing.assert_array_equal(a.window_familiarity, b.window_familiarity)
        np.testing.assert_array_equal(a.unknown, b.unknown)
        assert a.segments == b.segments and a.clip.label == b.clip.label


def test_a_model_still_loading_when_the_pass_starts_shares_frames_all_the_same(served, wild):
    video = wild / "rowing-commercial.mp4"
    loaded = scan(video, [served["lrcn"][1]], None, None, 5, silent)[0]
    loading = Recognizer("lrcn", runtime="onnx-int8", background=True)  # ready some 0.4 s into the pass
    assert not loading.ready
    late = scan(video, [loading], None, None, 5, silent)[0]
    assert late.window_familiarity is not None  # per-frame features, not whole windows (which have none)
    np.testing.assert_array_equal(late.window_probs, loaded.window_probs)
    np.testing.assert_array_equal(late.window_familiarity, loaded.window_familiarity)
    assert late.segments == loaded.segments

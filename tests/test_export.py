"""The ONNX copy (model.onnx here: the tiny model does not split frame by frame; frame.onnx + head.onnx in
tests/test_split.py): made from model.keras and checked against it; served by ONNX Runtime without TensorFlow where
usable, never when stale; the command line's default."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

import har.serve.backends
import har.serve.export
from har import Recognizer
from har.errors import ModelError
from har.media.video import sample_clip
from har.modeldir import load_model
from har.serve.backends import gpu_present, serving_sessions
from har.serve.export import DIGEST_KEY, ONNX_FILE, export_onnx, keras_digest

SHIPPED = ("lrcn", "convlstm", "lrcn_tutorial", "convlstm_tutorial")


@pytest.fixture
def no_gpu(monkeypatch):
    """``auto`` as on a machine without an NVIDIA GPU, whatever this one has (with one, TensorFlow rightly serves)."""
    monkeypatch.setattr(har.serve.backends, "gpu_present", lambda: False)


@pytest.fixture(scope="module")
def onnx_model(tiny_model, tmp_path_factory):
    """A copy of the tiny model with its model.onnx (training writes one; this checks it is there)."""
    d = tmp_path_factory.mktemp("onnx") / "tiny"
    shutil.copytree(tiny_model, d)
    assert (d / ONNX_FILE).is_file()
    return d


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_has_a_current_onnx_copy_that_agrees_with_keras(name, ucf, shipped):
    keras_rec, onnx_rec = shipped(name, "keras"), shipped(name, "onnx")
    d = REPO / "models" / name
    sessions = serving_sessions(d, "onnx")  # raises unless the ONNX copy was made from this model.keras
    assert {s.get_modelmeta().custom_metadata_map[DIGEST_KEY] for s in sessions.values()} == {keras_digest(d)}
    assert (keras_rec.runtime, onnx_rec.runtime) == ("keras", "onnx")
    classes = keras_rec.config.classes
    clips = np.stack([sample_clip(sorted((ucf / c).glob("*.mp4"))[-1], keras_rec.config.frames,
                                  keras_rec.config.size) for c in classes])  # a real clip of each class
    expected, got = keras_rec.probabilities(clips), onnx_rec.probabilities(clips)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_onnx_and_keras_give_the_same_timeline(onnx_model, wild):
    video = wild / "rowing-commercial.mp4"
    a = Recognizer(onnx_model, runtime="keras").timeline(video)
    b = Recognizer(onnx_model, runtime="onnx").timeline(video)
    np.testing.assert_allclose(b.window_probs, a.window_probs, atol=1e-5)
    assert [(s.label, s.start_s, s.end_s) for s in b.segments] == [(s.label, s.start_s, s.end_s) for s in a.segments]


def test_a_stale_or_damaged_copy_is_never_served(onnx_model, tmp_path, caplog, monkeypatch, no_gpu):
    stale = tmp_path / "stale"
    shutil.copytree(onnx_model, stale)
    model, _ = load_model(stale)  # retrained since the export: other weights in model.keras
    model.set_weights([w * 0.5 for w in model.get_weights()])
    model.save(stale / "model.keras")
    with caplog.at_level("WARNING"):
        assert Recognizer(stale, runtime="auto").runtime == "keras"
    assert "was not made from the present model.keras" in caplog.text
    with pytest.raises(ModelError, match=r"no usable ONNX copy \(frame.onnx and head.onnx, or model.onnx\) made "
                                         "from its model.keras: run `python -m har export --model "):
        Recognizer(stale, runtime="onnx")

    damaged = tmp_path / "damaged"
    shutil.copytree(onnx_model, damaged)
    (damaged / ONNX_FILE).write_bytes(b"not onnx")
    assert Recognizer(damaged, runtime="auto").runtime == "keras"
    missing = tmp_path / "missing"
    shutil.copytree(onnx_model, missing)
    (missing / ONNX_FILE).unlink()
    assert Recognizer(missing, runtime="auto").runtime == "keras"
    assert serving_sessions(missing) is None

    export_onnx(stale)  # renewed: served again
    assert Recognizer(stale, runtime="auto").runtime == "onnx"
    with monkeypatch.context() as gpu:  # on a machine with a GPU, auto means TensorFlow (on the GPU)
        gpu.setattr(har.serve.backends, "gpu_present", lambda: True)
        assert Recognizer(stale, runtime="auto").runtime == "keras"
        assert Recognizer(stale, runtime="onnx").runtime == "onnx"  # asked for by name: still served
    with pytest.raises(ModelError, match="Unknown runtime 'tflite'"):
        Recognizer(onnx_model, runtime="tflite")


def test_har_runtime_chooses_for_auto_and_a_copy_that_disagrees_is_not_kept(onnx_model, tmp_path, monkeypatch,
                                                                           no_gpu):
    monkeypatch.setenv("HAR_RUNTIME", "keras")
    assert Recognizer(onnx_model, runtime="auto").runtime == "keras"
    monkeypatch.setenv("HAR_RUNTIME", "onnx")
    assert Recognizer(onnx_model, runtime="auto").runtime == "onnx"
    monkeypatch.delenv("HAR_RUNTIME")

    d = tmp_path / "d"
    shutil.copytree(onnx_model, d)
    (d / ONNX_FILE).unlink()
    monkeypatch.setattr(har.serve.export, "TOLERANCE", -1.0)  # nothing agrees within a negative tolerance
    with pytest.raises(ModelError, match="differs from the Keras model by"):
        export_onnx(d)
    assert sorted(p.name for p in d.iterdir()) == sorted(p.name for p in onnx_model.iterdir() if p.name != ONNX_FILE)


def test_cli_serves_onnx_by_default_without_importing_tensorflow(onnx_model, ucf, tmp_path, cli):
    clip = sorted((ucf / "Surfing").glob("*.mp4"))[0]
    args = ["predict", str(clip), "--model", str(onnx_model), "--timeline", "--json"]
    # what a fresh process imports: only a process of its own can tell
    probe = ("import sys, json\nfrom har.cli import main\nrc = main(sys.argv[1:])\n"
             "print(json.dumps({'rc': rc, 'tensorflow': 'tensorflow' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", probe, *args, "--runtime", "auto"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    *_, result, tail = done.stdout.strip().splitlines()
    auto, auto_proc = json.loads(result), json.loads(tail)
    # A subprocess cannot be patched: on a machine with an NVIDIA GPU the default is rightly TensorFlow.
    expected = ("keras", True) if gpu_present() else ("onnx", False)
    assert (auto["runtime"], auto_proc["tensorflow"]) == expected
    assert auto_proc["rc"] == 0
    by_keras = cli(*args, "--runtime", "keras")
    assert by_keras.returncode == 0, by_keras.stderr[-2000:]
    keras = json.loads(by_keras.stdout.strip().splitlines()[-1])
    assert keras["runtime"] == "keras"
    assert auto["top"][0]["label"] == keras["top"][0]["label"]
    assert auto["top"][0]["score"] == pytest.approx(keras["top"][0]["score"], abs=1e-4)
    assert [s["label"] for s in auto["segments"]] == [s["label"] for s in keras["segments"]]

    again = tmp_path / "again"
    shutil.copytree(onnx_model, again)
    (again / ONNX_FILE).unlink()
    done = cli("export", "--model", str(again))
    assert done.returncode == 0 and done.stdout.strip().endswith(ONNX_FILE), done.stderr[-2000:]
    assert list(serving_sessions(again, "onnx")) == [ONNX_FILE]

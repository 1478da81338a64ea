"""har.evaluation.explain on the shipped models and real clips: frame importance by occlusion, Grad-CAM heat maps, the
words,
the strip, the stored dashboard files and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO

from har.errors import HarError, ModelError
from har.evaluation.explain import STORED_IMAGE, STORED_JSON, explain, log_odds, occluded, strip
from har.media.video import probe, sample_clip, sample_span

pytestmark = pytest.mark.slow

VIOLIN = "PlayingViolin/v_PlayingViolin_g08_c01.mp4"


@pytest.fixture(params=["lrcn", "convlstm"])
def model(request, shipped):
    """Each shipped model, as the app serves it."""
    return shipped(request.param, "auto")


def test_occlusion_replaces_one_frame_by_its_neighbours_mean():
    clip = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    out = occluded(clip)
    assert out.shape == (5, 5, 8, 8, 3)
    for t in range(5):
        others = [i for i in range(5) if i != t]
        assert np.array_equal(out[t, others], clip[others])
    mean = (clip[1].astype(int) + clip[3].astype(int) + 1) // 2
    assert np.array_equal(out[2, 2], mean)
    assert np.array_equal(out[0, 0], clip[1]) and np.array_equal(out[4, 4], clip[3])


def test_log_odds_do_not_saturate():
    p = np.array([[0.999999, 1e-6, 0.0], [0.5, 0.25, 0.25]])
    assert log_odds(p, 0) == pytest.approx([np.log(0.999999 / 1e-6), 0.0], abs=1e-6)


def test_a_shipped_model_explains_a_real_clip(model, ucf):
    path = ucf / VIOLIN
    e = explain(model, path)
    c = model.config
    clip = sample_clip(path, c.frames, c.size)
    probs = model.probabilities(clip[None])[0]
    assert e.label == c.classes[int(probs.argmax())] and e.probability == pytest.approx(float(probs.max()), abs=1e-5)
    assert np.array_equal(e.frames, clip)
    # one importance per frame, summing to 1 (or all zero): the positive drops, normalised
    assert e.importance.shape == e.drop.shape == (c.frames,)
    assert e.importance.sum() == pytest.approx(1.0, abs=1e-5) or not e.importance.any()
    assert np.allclose(e.importance, np.maximum(e.drop, 0) / np.maximum(e.drop, 0).sum(), atol=1e-6)
    # occluding the most important frame lowers the answer more than occluding the least important, checked anew
    k = c.classes.index(e.label)
    most, least = int(e.importance.argmax()), int(e.drop.argmin())
    variants = occluded(clip)[[most, least]]
    after = log_odds(model.probabilities(variants).astype(np.float64), k)
    before = log_odds(probs[None].astype(np.float64), k)[0]
    assert before - after[0] > before - after[1]
    assert before - after[0] == pytest.approx(e.drop[most], abs=1e-3)
    # heat maps: the frame's size, in [0, 1], not constant, hottest somewhere
    assert e.heatmaps.shape == (c.frames, c.size, c.size) and e.heatmaps.dtype == np.float32
    assert e.heatmaps.min() >= 0 and 0.9 < e.heatmaps.max() <= 1.0  # the hottest cell, smoothed by the resize
    assert e.heatmaps.std() > 0.01 and any(m.std() > 0 for m in e.heatmaps)
    # the frames' times lie inside the clip, in order
    info = probe(path)
    assert np.all(np.diff(e.times_s) > 0) and 0 <= e.times_s[0] and e.times_s[-1] <= info.duration_s
    words = e.summary("X")
    assert words.startswith(f"X ({e.label}, ") and "of 20" in words and words.endswith("of the picture.")
    image = strip([e, e], ["A", "B"])
    assert image.dtype == np.uint8 and image.shape[1] == 20 * 96 and image.shape[0] > 2 * 96
    assert json.loads(json.dumps(e.to_dict()))["importance"] == pytest.approx(e.importance.tolist(), abs=1e-4)


def test_a_window_is_explained_on_its_own_frames(ucf, shipped):
    rec = shipped("lrcn", "auto")
    path = ucf / VIOLIN
    clip, times = sample_span(path, rec.config.frames, rec.config.size, 1.0, 3.0)
    assert times[0] == pytest.approx(1.05) and times[-1] == pytest.approx(2.95)
    e = explain(rec, path, start_s=1.0, end_s=3.0)
    assert np.array_equal(e.frames, clip) and np.allclose(e.times_s, times)
    with pytest.raises(HarError, match="is not inside"):
        explain(rec, path, start_s=500.0)


def test_a_model_without_feature_maps_cannot_be_explained(tmp_path):
    import keras

    from har.evaluation.explain import feature_maps_layer

    frames = keras.Input((4, 8, 8, 3))
    model = keras.Model(frames, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(frames)))
    with pytest.raises(ModelError, match="no per-frame feature maps"):
        feature_maps_layer(model)


def test_the_stored_explanations_are_of_the_shipped_models():
    """models/*/explained.{jpg,json} (python -m har explain) are what the dashboard shows: one row per class."""
    import cv2

    for name in ("lrcn", "convlstm"):
        d = REPO / "models" / name
        records = json.loads((d / STORED_JSON).read_text())
        assert [r["class"] for r in records] == sorted(r["class"] for r in records) and len(records) == 6
        assert all(r["model"] == name and len(r["importance"]) == 20 for r in records)
        assert cv2.imread(str(d / STORED_IMAGE)).shape[1] == 20 * 96


def test_predict_explain_writes_the_strip(ucf, tmp_path, cli):
    out = tmp_path / "why.png"
    done = cli("predict", str(ucf / VIOLIN), "--explain", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["explanation"]["strip"] == str(out) and len(result["explanation"]["importance"]) == 20
    assert result["explanation"]["label"] == result["top"][0]["label"]
    import cv2

    assert cv2.imread(str(out)).shape[1] == 20 * 96

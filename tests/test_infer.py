"""Recognition (har.serve.recognizer, har.serve.timeline, har.serve.analysis, har.media.annotation): window planning,
smoothing,
classify/timeline/analyze on real clips, threads, the uncertain path, the annotated H.264 copy, the predict CLI,
and segments found on clips of different classes stitched together."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, read_index, write_video

from har import UNCERTAIN, Recognizer, analyze, annotate
from har.config import ModelConfig
from har.errors import HarError, VideoError
from har.media.annotation import output_size
from har.media.ffmpeg import ffmpeg_exe
from har.media.video import count_frames, probe, sample_clip, sample_indices
from har.modeldir import MODEL_FILE
from har.models import builders as models
from har.serve.backends import Backend
from har.serve.segments import decode, merge_short_runs, per_second, per_step, viterbi
from har.serve.surgery import split_per_frame
from har.serve.timeline import HOP_S, SWITCH_PENALTY, WINDOW_S, plan_windows, settings

CLASSES = ("Archery", "PlayingPiano", "Surfing")  # tiny_model's classes


def ucf_clips(ucf: Path) -> list[Path]:
    """One held-out-looking clip per class of tiny_model (groups it was not trained on)."""
    return [sorted((ucf / c).glob(f"v_{c}_g2*_c01.mp4"))[0] for c in CLASSES]


def ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def with_config(model_dir: Path, dest: Path, **changes) -> Path:
    """A copy of a model directory whose config.json has ``changes``."""
    dest.mkdir(parents=True)
    shutil.copy(model_dir / MODEL_FILE, dest / MODEL_FILE)
    dataclasses.replace(ModelConfig.load(model_dir), **changes).save(dest)
    return dest


# --- planning and smoothing (no model) ---------------------------------------------------------------------------


def test_windows_sample_like_a_training_clip_on_one_shared_grid():
    fps, frames, window, hop = 25.0, 20, 8.0, 1.0
    total = int(60.25 * fps)
    plan = plan_windows(total, fps, frames, window, hop)
    step = window / frames
    assert plan.length_s == window
    # every window: 20 frames at equal steps of window/frames seconds, spanning one window
    gaps = np.diff(plan.indices, axis=1) / fps
    assert np.allclose(gaps, step, atol=1 / fps)
    assert plan.indices.min() >= 0 and plan.indices.max() < total
    # starts every hop (within half a grid step), the last window ends at the video's end
    assert np.all(np.abs(plan.starts_s[:-1] - np.arange(len(plan.starts_s) - 1) * hop) <= step / 2 + 1e-9)
    assert total / fps - (plan.starts_s[-1] + window) < step
    # windows share frames: the pass retrieves about frames/window per second, not every frame
    assert len(np.unique(plan.indices)) <= total / fps * frames / window + frames
    assert plan.clip.tolist() == sample_indices(total, frames).tolist()


def test_a_video_shorter_than_a_window_is_one_window_sampled_as_in_training():
    plan = plan_windows(100, 25.0, 20, 7.66, 1.0)  # 4 s
    assert plan.indices.tolist() == [sample_indices(100, 20).tolist()]
    assert plan.starts_s.tolist() == [0.0] and plan.length_s == 4.0


def test_per_second_probabilities_follow_the_windows():
    starts = np.arange(0.0, 13.0)  # 13 windows of 8 s over 20 s: class 0 until 10 s, class 1 after
    mids = starts + 4
    wp = np.where((mids < 10)[:, None], [[0.9, 0.1]], [[0.1, 0.9]]).astype(np.float32)
    t, probs = per_second(starts, 8.0, wp, 20.0)
    assert t.tolist() == list(range(20)) and probs.shape == (20, 2)
    assert np.allclose(probs.sum(axis=1), 1.0)
    labels = probs.argmax(axis=1)
    assert labels[:9].tolist() == [0] * 9 and labels[11:].tolist() == [1] * 9


def test_per_step_is_per_second_on_finer_steps():
    # windows of 2 s every 0.5 s (snapped 0.1 s late, as on a sample grid) over 27.3 s; centred before 10.35 s:
    # class 0, after: class 1
    starts = np.arange(0.0, 25.0, 0.5) + 0.1
    wp = np.where((starts + 1 < 10.35)[:, None], [[0.9, 0.1]], [[0.1, 0.9]]).astype(np.float32)
    t, probs = per_step(starts, 2.0, wp, 27.3, 0.5)
    assert t.tolist() == [i * 0.5 for i in range(55)] and probs.shape == (55, 2)  # the last step is partial
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.flatnonzero(np.diff(probs.argmax(axis=1))).tolist() == [20]  # class 1 from 10.5 s: the nearest step
    seconds, by_second = per_second(starts, 2.0, wp, 27.3)
    t1, p1 = per_step(starts, 2.0, wp, 27.3, 1.0)
    assert seconds.tolist() == t1.tolist() == list(range(28)) and np.array_equal(by_second, p1)


def _labels(segments, step_s: float, classes) -> list[int]:
    """Per-step label indices of decoded segments (-1: UNCERTAIN)."""
    return [-1 if s.label == UNCERTAIN else classes.index(s.label)
            for s in segments for _ in range(round((s.end_s - s.start_s) / step_s))]


def test_viterbi_is_the_best_path_and_penalty_zero_is_each_steps_best():
    rng = np.random.default_rng(0)
    for _ in range(20):  # against every path of 6 steps over 3 states
        scores = rng.normal(size=(6, 3))
        grid = np.stack(np.meshgrid(*[range(3)] * 6, indexing="ij"), -1).reshape(-1, 6)
        totals = scores[np.arange(6), grid].sum(axis=1) - 1.5 * (np.diff(grid, axis=1) != 0).sum(axis=1)
        path = viterbi(scores, 1.5)
        assert scores[np.arange(6), path].sum() - 1.5 * np.count_nonzero(np.diff(path)) == pytest.approx(totals.max())
        assert viterbi(scores, 0.0).tolist() == scores.argmax(axis=1).tolist()
    # with the decoder's scores, penalty 0 is the threshold rule on every step
    classes = ("a", "b", "c")
    probs = rng.dirichlet([0.7] * 3, size=40).astype(np.float32)
    expected = np.where(probs.max(axis=1) >= 0.5, probs.argmax(axis=1), -1).tolist()
    assert 0 < expected.count(-1) < 40 and len(set(expected)) == 4
    assert _labels(decode(probs, 0.5, 20.0, classes, 0.5, 0.0), 0.5, classes) == expected


def test_the_decoder_absorbs_a_blip_keeps_a_short_action_and_finds_the_unknown():
    classes = ("a", "b", "c")
    p = np.tile(np.float32([0.8, 0.1, 0.1]), (60, 1))  # 30 s in steps of 0.5 s
    p[9] = [0.3, 0.6, 0.1]  # one noisy step: must not split the segment
    p[20:23] = [0.1, 0.85, 0.05]  # a true action of 1.5 s: three steps
    p[40:46] = [0.4, 0.3, 0.3]  # 3 s under the threshold: none of the known actions
    segs = decode(p, 0.5, 29.8, classes, 0.5, SWITCH_PENALTY)
    assert [(s.start_s, s.end_s, s.label) for s in segs] == [
        (0.0, 10.0, "a"), (10.0, 11.5, "b"), (11.5, 20.0, "a"), (20.0, 23.0, UNCERTAIN), (23.0, 29.8, "a")]
    assert segs[1].score == pytest.approx(0.85) and segs[3].score == pytest.approx(0.4)
    assert segs[0].score == pytest.approx(float(np.r_[p[:20, 0]].mean()))
    # penalty 0: the blip is a segment of its own; a high one absorbs the short action too
    assert [s.label for s in decode(p, 0.5, 29.8, classes, 0.5, 0.0)][:4] == ["a", "b", "a", "b"]
    assert [s.label for s in decode(p, 0.5, 29.8, classes, 0.5, 5.0)] == ["a", UNCERTAIN, "a"]
    # an open-set score passed per step replaces the threshold: unknown where it says so, even on confident steps
    u = np.zeros(60)
    u[50:56] = 1.0
    segs = decode(p, 0.5, 29.8, classes, 0.5, SWITCH_PENALTY, unknown=u)
    assert [(s.start_s, s.label) for s in segs] == [(0.0, "a"), (10.0, "b"), (11.5, "a"), (25.0, UNCERTAIN),
                                                    (28.0, "a")]
    soft = decode(p, 0.5, 29.8, classes, 0.5, SWITCH_PENALTY, unknown=0.05 + 0.85 * u)  # 0.05 known, 0.9 unknown
    assert soft == segs


def test_defaults_come_from_the_config():
    old = ModelConfig(arch="lrcn", preset="imagenet", classes=("a", "b"), whole_clip_window_s=7.24,
                      whole_clip_hop_s=1.0)
    assert settings(old) == (7.24, 1.0) and settings(old, 3.0, 0.25) == (3.0, 0.25)
    cropped = dataclasses.replace(old, min_window_s=1.5)
    assert settings(cropped) == (WINDOW_S, HOP_S) == (2.0, 0.5) and settings(cropped, hop_s=1.0) == (2.0, 1.0)
    assert settings(dataclasses.replace(old, min_window_s=3.0)) == (3.0, HOP_S)  # never under the shortest crop


def test_the_baseline_smoothing_absorbs_a_one_second_blip_and_marks_low_confidence():
    p = np.tile([[0.9, 0.05, 0.05]], (20, 1)).astype(np.float32)
    p[7] = [0.2, 0.7, 0.1]  # one noisy second: must not split the segment
    p[14:] = [0.4, 0.3, 0.3]  # below the threshold: none of the known actions
    segs = merge_short_runs(p, 19.5, ("a", "b", "c"), uncertain_below=0.5)
    assert [(s.start_s, s.end_s, s.label) for s in segs] == [(0.0, 14.0, "a"), (14.0, 19.5, UNCERTAIN)]
    assert segs[0].score == pytest.approx(float(np.r_[p[:7, 0], p[8:14, 0], p[7, 0]].mean()))
    assert segs[1].score == pytest.approx(0.4)


def test_output_size_caps_at_720p_and_is_even():
    assert output_size(1920, 1080) == (1280, 720)
    assert output_size(1080, 1920) == (720, 1280)
    assert output_size(640, 360) == (640, 360)
    assert output_size(321, 241) == (320, 240)
    assert output_size(3840, 1080) == (1280, 360)


@pytest.mark.parametrize("preset", ["tutorial", "imagenet"])  # a chain after the CNN; a branching head
def test_models_that_start_frame_by_frame_split_in_halves_that_agree(preset):
    from har.models import builders as models

    x = np.random.default_rng(0).integers(0, 256, (2, 8, 64, 64, 3), np.uint8)
    model = models.build("lrcn", preset, 4, frames=8, size=64)
    frame_model, head = split_per_frame(model, 64)
    feats = np.asarray(frame_model(x.reshape(-1, 64, 64, 3), training=False)).reshape(2, 8, -1)
    assert np.allclose(head(feats, training=False), model(x, training=False), atol=1e-5)


def test_models_that_look_at_more_than_one_frame_early_run_whole():
    import keras
    from keras import layers

    from har.models import builders as models

    # our from-scratch LRCN pairs each frame's pixels with their motion; these ConvLSTMs are recurrent from the first
    # layer (the ImageNet ConvLSTM's encoder splits off: tests/test_split.py)
    for arch, preset in [("lrcn", "default"), ("convlstm", "default"), ("convlstm", "tutorial")]:
        assert split_per_frame(models.build(arch, preset, 4, frames=8, size=64), 64) is None
    # per-frame vectors whose head also reads the frames themselves: no head can be cut from the vectors alone
    frames = keras.Input((8, 64, 64, 3), dtype="uint8")
    x = layers.Rescaling(1 / 255)(frames)
    vectors = layers.TimeDistributed(layers.GlobalAveragePooling2D())(x)
    peaks = layers.TimeDistributed(layers.GlobalMaxPooling2D())(x)
    probs = layers.Dense(2, activation="softmax")(layers.Flatten()(layers.Concatenate()([vectors, peaks])))
    assert split_per_frame(keras.Model(frames, probs), 64) is None


@pytest.mark.parametrize("name", ["lrcn", "lrcn_scratch", "lrcn_tutorial", "convlstm"])
def test_folding_time_into_the_batch_serves_identical_numbers(name):
    from har.modeldir import load_model
    from har.serve.surgery import fold_time

    saved, config = load_model(REPO / "models" / name)
    served, _ = load_model(REPO / "models" / name)
    folded = fold_time(served)
    # every per-frame layer, none else (the imagenet presets' encoder is one nested model, folded whole; the
    # ConvLSTM's 1x1 reduce is the other)
    assert folded == {"lrcn": 2, "lrcn_scratch": 13, "lrcn_tutorial": 12, "convlstm": 2}[name]
    size = config.size
    clips = np.random.default_rng(3).integers(0, 256, (3, 20, size, size, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(served(clips, training=False)), np.asarray(saved(clips, training=False)),
                               rtol=1e-5, atol=1e-6)


class SpyBackend(Backend):
    """A "model" that reads back which frames it got (the test videos show their frame index in stripes): whole
    windows, or per-frame features and a head; served by a real Recognizer, so the pass and its bookkeeping are
    the real ones."""

    runtime = "spy"

    def __init__(self, per_frame: bool):
        self.per_frame, self.feature_shape = per_frame, (1,)
        self.windows: list[list[int]] = []

    def clips(self, x):  # windows (whole-model path) and the whole-clip sample
        self.windows += [[read_index(f) for f in clip] for clip in x]
        return np.tile(np.float32([0.6, 0.4]), (len(x), 1))

    def frames(self, x):
        return np.float32([[read_index(f)] for f in x])

    def head(self, features):
        self.windows += features[:, :, 0].astype(int).tolist()
        return np.tile(np.float32([0.6, 0.4]), (len(features), 1))


@pytest.mark.parametrize("per_frame", [False, True])
def test_every_window_gets_exactly_its_planned_frames_even_when_the_container_lies(tmp_path, per_frame):
    full = write_video(tmp_path / "full.avi", 200, "MJPG")  # 8 s at 25 fps, frame i shows i
    data = full.read_bytes()
    lying = tmp_path / "lying.avi"
    lying.write_bytes(data[: len(data) * 3 // 4])  # the header still says 200 frames
    for video in (full, lying):
        real, _ = count_frames(video)
        spy = SpyBackend(per_frame)
        config = ModelConfig(arch="lrcn", preset="default", classes=("a", "b"), frames=8, size=64,
                             whole_clip_window_s=2.0, whole_clip_hop_s=1.0)
        tl = Recognizer.serving(spy, config, "spy", batch_size=4).timeline(video)
        plan = plan_windows(real, 25.0, 8, 2.0, 1.0)
        # the last pass's windows and whole-clip sample (a lying container costs a first, discarded pass)
        got = spy.windows[-len(plan.indices) - 1:]
        assert sorted(got) == sorted([*plan.indices.tolist(), plan.clip.tolist()]), video.name
        assert tl.frame_count == real and len(tl.window_starts) == len(plan.indices)
    assert real < 200


# --- the recognizer on real clips ---------------------------------------------------------------------------------


def test_classify_is_the_training_sampling_through_the_model(tiny_recognizer, tiny_model, ucf):
    clip = ucf_clips(ucf)[0]
    pred = tiny_recognizer.classify(clip, top_k=2)
    assert tiny_recognizer.name == "lrcn" and tiny_recognizer.config.classes == CLASSES
    expected = np.asarray(tiny_recognizer.keras_model(sample_clip(clip, 20, 64)[None], training=False))[0]
    assert np.allclose(pred.probs, expected, atol=1e-5)
    d = pred.to_dict()
    assert [s["label"] for s in d["top"]] == [CLASSES[i] for i in np.argsort(-expected)[:2]]
    assert d["top"][0]["score"] >= d["top"][1]["score"]
    assert d["uncertain"] == (expected.max() < 0.5)
    assert d["label"] == (UNCERTAIN if d["uncertain"] else d["top"][0]["label"])
    with pytest.raises(HarError, match=r"^top-k must be a whole number of at least 1, not 0\.$"):
        tiny_recognizer.classify(clip, top_k=0)


def test_timeline_and_analyze_decode_once_for_all_models(tiny_recognizer, tiny_model, ucf, tmp_path):
    video = ucf_clips(ucf)[2]
    frames, _ = count_frames(video)
    fps = probe(video).fps
    seen = []
    tl = tiny_recognizer.timeline(video, window_s=2.0, hop_s=0.5, progress=lambda f, m: seen.append(f))
    assert tl.frame_count == frames and tl.duration_s == pytest.approx(frames / fps)
    assert tl.window_s == 2.0 and tl.hop_s == 0.5
    assert len(tl.window_starts) == tl.window_probs.shape[0] > 1
    assert tl.probs.shape == (int(np.ceil(tl.duration_s)), 3)
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen) and seen == sorted(seen)
    # the whole-clip prediction of the same pass is classify's
    assert np.allclose(tl.clip.probs, tiny_recognizer.classify(video).probs, atol=1e-5)
    assert tl.segments[0].start_s == 0 and tl.segments[-1].end_s == pytest.approx(tl.duration_s, abs=0.01)
    # the decoder's steps are the hop: per-step probabilities, boundaries on half seconds; per second kept beside
    assert tl.step_s == 0.5 and tl.penalty == SWITCH_PENALTY and len(tl.steps) == np.ceil(tl.duration_s / 0.5 - 1e-6)
    assert tl.step_probs.shape == (len(tl.steps), 3) and tl.unknown.shape == (len(tl.steps),)
    assert all((2 * s.start_s).is_integer() for s in tl.segments)
    assert tl.segments == decode(tl.step_probs, 0.5, tl.duration_s, CLASSES, tl.clip.uncertain_below, SWITCH_PENALTY)
    assert np.array_equal(tl.probs_at(1.7), tl.step_probs[3]) and tl.label_at(1.7)[0] == next(
        s.label for s in tl.segments if s.start_s <= 1.7 < s.end_s)

    # two models side by side, one call: same answers as each alone
    assert not tiny_recognizer.per_frame  # our LRCN pairs frames with their motion: it runs whole per window
    other = Recognizer(with_config(tiny_model, tmp_path / "other", uncertain_below=0.0), share_frames=False)
    # a model whose CNN sees one frame at a time (the tutorial LRCN) shares per-frame features across windows
    flat_dir = with_config(tiny_model, tmp_path / "flat", preset="tutorial")
    models.build("lrcn", "tutorial", 3).save(flat_dir / MODEL_FILE)
    flat = Recognizer(flat_dir)
    assert flat.per_frame and not other.per_frame
    flat_alone = flat.timeline(video, window_s=2.0, hop_s=0.5)
    both = analyze(video, [tiny_recognizer, other, flat], window_s=2.0, hop_s=0.5)
    assert list(both) == ["lrcn", "other", "flat"]
    assert np.allclose(both["lrcn"].timeline.window_probs, tl.window_probs, atol=1e-5)
    assert np.allclose(both["other"].timeline.window_probs, tl.window_probs, atol=1e-5)
    assert np.allclose(both["flat"].timeline.window_probs, flat_alone.window_probs, atol=1e-5)
    assert both["other"].uncertain is False and both["other"].label == both["other"].clip.top[0].label
    d = json.loads(json.dumps(both["lrcn"].to_dict()))
    assert d["input"] == str(video) and d["model"] == "lrcn"
    assert set(d) >= {"top", "uncertain", "label", "segments", "per_second"}
    assert d["per_second"]["classes"] == list(CLASSES) and len(d["per_second"]["t"]) == len(d["per_second"]["probs"])
    assert d["step_s"] == 0.5 and d["switch_penalty"] == SWITCH_PENALTY
    assert set(d["per_step"]) == {"t", "classes", "probs", "unknown"} and d["per_step"]["t"][:3] == [0.0, 0.5, 1.0]
    assert len(d["per_step"]["t"]) == len(d["per_step"]["probs"]) == len(d["per_step"]["unknown"])
    assert all(set(s) == {"start_s", "end_s", "label", "score"} for s in d["segments"])

    clip_only = analyze(video, tiny_recognizer, timeline=False, top_k=1)["lrcn"]
    assert clip_only.timeline is None and len(clip_only.clip.top) == 1
    assert "segments" not in clip_only.to_dict()


def test_parallel_calls_give_the_sequential_results(tiny_recognizer, ucf):
    clips = ucf_clips(ucf)
    expected = [tiny_recognizer.classify(c).probs for c in clips]
    expected_tl = tiny_recognizer.timeline(clips[0], window_s=2.0).window_probs

    def work(i: int):
        if i % 4 == 3:
            return tiny_recognizer.timeline(clips[0], window_s=2.0).window_probs
        return tiny_recognizer.classify(clips[i % 3]).probs

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(work, range(16)))
    for i, probs in enumerate(got):
        want = expected_tl if i % 4 == 3 else expected[i % 3]
        assert np.allclose(probs, want, atol=1e-5), i


def test_low_confidence_says_none_of_the_known_actions(tiny_model, ucf, tmp_path, cli):
    strict = with_config(tiny_model, tmp_path / "strict", uncertain_below=0.999)  # the threshold is config
    rec = Recognizer(strict)
    clip = ucf_clips(ucf)[1]
    pred = rec.classify(clip)
    assert pred.uncertain and pred.label == UNCERTAIN
    assert pred.to_dict()["label"] == "none of the known actions"
    assert pred.top[0].label in CLASSES  # the guesses stay available, but are not the answer
    tl = rec.timeline(clip, window_s=2.0)
    assert {s.label for s in tl.segments} == {UNCERTAIN}
    assert tl.label_at(0.5)[0] == UNCERTAIN
    lenient = Recognizer(tiny_model, uncertain_below=0.0)
    assert lenient.classify(clip).label == pred.top[0].label

    out = cli("predict", str(clip), "--model", str(strict))
    assert out.returncode == 0, out.stderr
    assert "says none of the known actions (top probability" in out.stdout


def test_errors_name_the_problem(tiny_recognizer, ucf, tmp_path, monkeypatch):
    clip = ucf_clips(ucf)[0]
    with pytest.raises(VideoError, match=r"^Video file 'nope\.mp4' does not exist\.$"):
        tiny_recognizer.classify(tmp_path / "nope.mp4")
    with pytest.raises(HarError, match=r"^The window length must be a positive number of seconds, not 0\.$"):
        tiny_recognizer.timeline(clip, window_s=0)
    with pytest.raises(HarError, match=r"^The hop length must be a positive number of seconds, not 'x'\.$"):
        tiny_recognizer.timeline(clip, hop_s="x")
    with pytest.raises(HarError, match=r"^The switching penalty must be a number of at least 0, not -1\.$"):
        tiny_recognizer.timeline(clip, penalty=-1)
    seconds = probe(clip).duration_s
    monkeypatch.setenv("HAR_MAX_VIDEO_SECONDS", "2")
    msg = rf"^'{clip.name}' is {round(seconds)} s long; videos up to 2 s can be analysed\. Trim it or pick a shorter"
    for call in (tiny_recognizer.classify, tiny_recognizer.timeline):
        with pytest.raises(VideoError, match=msg):
            call(clip)
    monkeypatch.setenv("HAR_MAX_VIDEO_SECONDS", "ten")
    with pytest.raises(HarError, match=r"^HAR_MAX_VIDEO_SECONDS='ten' is not a positive number of seconds\.$"):
        tiny_recognizer.classify(clip)


def test_a_recognizer_loading_in_the_background_serves_the_same_numbers_and_raises_a_bad_models_error(
        tiny_recognizer, tiny_model, ucf, tmp_path):
    from har.errors import ModelError

    clip = ucf_clips(ucf)[0]
    rec = Recognizer(tiny_model, background=True)  # returns before TensorFlow work: the config is read already
    assert rec.config.classes == tiny_recognizer.config.classes
    timeline = rec.timeline(clip)  # decoding starts at once; the windows wait for the model
    assert rec.ready
    expected = tiny_recognizer.timeline(clip)
    np.testing.assert_allclose(timeline.window_probs, expected.window_probs, atol=1e-6)
    np.testing.assert_allclose(timeline.clip.probs, expected.clip.probs, atol=1e-6)

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.keras").write_bytes(b"not a zip")
    bad = Recognizer(broken, background=True)  # no error yet: it surfaces where the model is needed
    with pytest.raises(ModelError, match="model.keras could not be loaded"):
        bad.timeline(clip)
    with pytest.raises(ModelError, match="model.keras could not be loaded"):
        bad.wait()
    with pytest.raises(ModelError, match="model.keras could not be loaded"):
        Recognizer(broken)  # in the foreground it fails at once


# --- the annotated copy -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_with_audio(wild, tmp_path_factory) -> Path:
    """The first 3 s of a wild video (640x360, 29.97 fps, AAC audio)."""
    out = tmp_path_factory.mktemp("audio") / "rowing-3s.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wild / "rowing-commercial.mp4"), "-t", "3",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(out)], check=True)
    return out


def test_annotated_copy_is_h264_with_the_sources_frames_duration_and_audio(tiny_recognizer, clip_with_audio,
                                                                           tmp_path):
    src = clip_with_audio
    frames, duration = count_frames(src)
    tl = tiny_recognizer.timeline(src, window_s=1.0)
    seen = []
    out = annotate(src, tmp_path / "sub" / "out.mp4", tl, progress=lambda f, m: seen.append(f))
    assert out == tmp_path / "sub" / "out.mp4" and seen[-1] == 1.0
    assert [p.name for p in out.parent.iterdir()] == ["out.mp4"]  # no temporary file left behind
    assert count_frames(out)[0] == frames
    assert abs(count_frames(out)[1] - duration) <= 1.5 / probe(src).fps
    info = ffprobe(out)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["codec_name"], video["pix_fmt"], video["width"], video["height"]) == ("h264", "yuv420p", 640, 360)
    assert int(video["nb_frames"]) == frames
    assert [s["codec_name"] for s in info["streams"] if s["codec_type"] == "audio"] == ["aac"]
    copied, source = audio_packet_sizes(out), audio_packet_sizes(src)
    assert len(copied) > 0.8 * len(source) and copied == source[: len(copied)]  # AAC copied, not re-encoded
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while downloading
    # the caption box darkens the top-left corner of every frame
    first_src = sample_clip(src, 1, 64)  # frame at the middle; compare corners on the middle frame
    first_out = sample_clip(out, 1, 64)
    assert first_out[0, :3, :10].mean() < first_src[0, :3, :10].mean()


def audio_packet_sizes(path: Path) -> list[int]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=size", "-of",
                          "csv=p=0", str(path)], capture_output=True, text=True, check=True)
    return [int(x.strip(",")) for x in out.stdout.split()]


def test_annotated_copy_turns_other_audio_into_aac(tiny_recognizer, wild, tmp_path):
    src = tmp_path / "opus.mkv"  # Opus in Matroska, as a WebM-like download holds it: MP4 gets AAC
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wild / "rowing-commercial.mp4"), "-t", "2", "-c:v",
                    "libx264", "-preset", "ultrafast", "-c:a", "libopus", str(src)], check=True)
    out = annotate(src, tmp_path / "out.mp4", tiny_recognizer.timeline(src, window_s=1.0))
    streams = ffprobe(out)["streams"]
    audio = [s for s in streams if s["codec_type"] == "audio"]
    video = next(s for s in streams if s["codec_type"] == "video")
    assert [s["codec_name"] for s in audio] == ["aac"]
    assert abs(float(audio[0]["duration"]) - float(video["duration"])) < 0.15  # as long as the video, within AAC frames


def answer_of(timeline, t: float) -> tuple:
    """What ``timeline`` answers at time ``t``: the label shown and the step's probabilities."""
    return timeline.label_at(t), tuple(timeline.probs_at(t).tolist())


def answering_always(timeline, t: float):
    """``timeline`` answering at every time what it answers at time ``t``: its label there, over the whole video,
    and that step's probabilities at every step."""
    segment = next(s for s in timeline.segments if s.start_s <= t < s.end_s)
    return dataclasses.replace(
        timeline, step_probs=np.tile(timeline.probs_at(t), (len(timeline.steps), 1)),
        segments=(dataclasses.replace(segment, start_s=0.0, end_s=timeline.duration_s),))


def test_each_frame_of_the_annotated_copy_shows_the_caption_of_its_time(tiny_recognizer, clip_with_audio,
                                                                         tmp_path):
    import cv2

    src = clip_with_audio
    tl = tiny_recognizer.timeline(src, window_s=1.0)
    fps = probe(src).fps
    # one reference copy per answer the timeline gives: the same video captioned with that answer throughout
    answers = {answer_of(tl, t): answering_always(tl, t) for t in tl.steps}
    assert len(answers) >= 2  # the probabilities change from step to step
    for key, constant in answers.items():
        assert {answer_of(constant, t) for t in np.linspace(0, tl.duration_s - 1e-3, 7)} == {key}
    out = annotate(src, tmp_path / "timed.mp4", {"lrcn": tl})
    refs = {key: annotate(src, tmp_path / f"ref{i}.mp4", {"lrcn": constant})
            for i, (key, constant) in enumerate(answers.items())}

    def frames(path):
        cap = cv2.VideoCapture(str(path))
        while True:
            ok, img = cap.read()
            if not ok:
                cap.release()
                return
            yield img.astype(np.float32)

    checked = 0
    streams = {key: frames(path) for key, path in refs.items()}
    for n, shown in enumerate(frames(out)):
        ref = {key: next(stream) for key, stream in streams.items()}
        mine = ref[answer_of(tl, n / fps)]
        for key, theirs in ref.items():
            differ = np.abs(mine - theirs).max(axis=-1) > 60  # where the two captions differ (their digits)
            if not differ.any():  # the same caption, encoded alike (two answers can read alike: 44.7 % and 45.2 %)
                continue
            err_mine = float(np.abs(shown - mine)[differ].mean())
            err_theirs = float(np.abs(shown - theirs)[differ].mean())
            assert err_mine < 0.5 * err_theirs, (n, key, err_mine, err_theirs)
            checked += 1
    assert n + 1 == count_frames(src)[0] and all(next(s, None) is None for s in streams.values())
    assert checked >= n + 1  # every frame against at least one caption it must not show


def test_annotated_copy_caps_at_720p_evens_odd_sizes_and_has_no_audio_when_the_source_has_none(
        tiny_recognizer, tmp_path):
    blue = np.zeros((1080, 1920, 3), np.uint8)
    blue[:, :, 0] = 255  # BGR
    big = write_video(tmp_path / "big.mp4", 12, "mp4v", size=(1920, 1080), make=lambda i, w, h: blue)
    pred = tiny_recognizer.classify(big)
    out = annotate(big, tmp_path / "big-out.mp4", pred)
    info = ffprobe(out)
    assert [(s["codec_type"], s["width"], s["height"]) for s in info["streams"]] == [("video", 1280, 720)]
    assert count_frames(out)[0] == 12
    middle = sample_clip(out, 1, 64)[0, 32, 32]  # RGB, away from the caption: colours survive the round trip
    assert middle[2] > 240 and middle[0] < 15 and middle[1] < 15
    odd = write_video(tmp_path / "odd.avi", 30, "MJPG", size=(321, 241))
    two = {"a": tiny_recognizer.timeline(odd), "b": pred}  # several models: one caption line each
    out = annotate(odd, tmp_path / "odd-out.mp4", two)
    video = ffprobe(out)["streams"][0]
    assert (video["width"], video["height"], int(video["nb_frames"])) == (320, 240, 30)


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_predict_json_with_timeline_and_annotated_copy(tiny_model, ucf, tmp_path, cli):
    clip = ucf_clips(ucf)[2]
    out_mp4 = tmp_path / "annotated.mp4"
    res = cli("predict", str(clip), "--model", str(tiny_model), "--top-k", "2", "--timeline",
                  "--window-s", "2", "--hop-s", "1", "--penalty", "0.5", "--annotate", str(out_mp4), "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout.strip().splitlines()[-1])
    assert d["input"] == str(clip) and d["model"] == "lrcn"
    assert len(d["top"]) == 2 and set(d["top"][0]) == {"label", "score"}
    assert d["top"][0]["score"] >= d["top"][1]["score"]
    assert d["window_s"] == 2 and d["hop_s"] == 1 and d["switch_penalty"] == 0.5 and d["segments"]
    assert d["per_second"]["classes"] == list(CLASSES)
    assert d["annotated"] == str(out_mp4) and count_frames(out_mp4)[0] == count_frames(clip)[0]

    plain = cli("predict", str(clip), "--model", str(tiny_model), "--json")
    d = json.loads(plain.stdout.strip().splitlines()[-1])
    assert "segments" not in d and len(d["top"]) == 3


def test_cli_predict_errors_are_one_line(tiny_model, ucf, tmp_path, cli):
    res = cli("predict", str(tmp_path / "missing.mp4"), "--model", str(tiny_model))
    assert res.returncode == 1 and res.stderr.strip() == "error: Video file 'missing.mp4' does not exist."
    (tmp_path / "notes.txt").write_text("hello")
    res = cli("predict", str(tmp_path / "notes.txt"), "--model", str(tiny_model))
    assert res.returncode == 1 and res.stderr.strip() == "error: 'notes.txt' is a text file, not a video."
    res = cli("predict", str(ucf_clips(ucf)[0]), "--model", str(tmp_path / "no-model"))
    assert res.returncode == 1 and res.stderr.startswith(f"error: No model named or found at '{tmp_path}/no-model'")


# --- segments on a real video: clips of three classes, stitched -------------------------------------------------


def test_timeline_finds_the_segments_of_stitched_clips(shipped, ucf, tmp_path):
    rec = shipped("lrcn")
    w = rec.config.whole_clip_window_s
    # Per class, clips of its held-out test groups that the model gets right as whole clips, until the class
    # lasts two windows: what is tested is where the timeline puts the boundaries, not the model's accuracy.
    # Clips shorter than half a window are left out: a window over three or four 2-second snippets cut together
    # is nothing like a training clip, even when each snippet alone is classified right.
    blocks: list[tuple[str, list[Path], float]] = []
    for cls in rec.config.classes:
        chosen, seconds = [], 0.0
        for group in (g for g in rec.config.split["test"] if g.startswith(f"{cls}/")):
            for clip in sorted((ucf / cls).glob(f"v_{cls}_{group.split('/')[1]}_c*.mp4")):
                if count_frames(clip)[1] < w / 2:
                    continue
                pred = rec.classify(clip)
                if pred.label == cls and pred.top[0].score >= 0.7:
                    chosen.append(clip)
                    seconds += count_frames(clip)[1]
                if seconds >= 2 * w:
                    break
            if seconds >= 2 * w:
                break
        if seconds >= 2 * w:
            blocks.append((cls, chosen, seconds))
        if len(blocks) == 3:
            break
    assert len(blocks) == 3, f"the shipped model is right on too few held-out clips: {blocks}"
    parts = [c for _, clips, _ in blocks for c in clips]
    video = tmp_path / "stitched.mp4"
    scale = "".join(f"[{i}:v]scale=320:240,setsar=1,fps=25[v{i}];" for i in range(len(parts)))
    concat = "".join(f"[v{i}]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=1:a=0[v]"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *[a for p in parts for a in ("-i", str(p))],
                    "-filter_complex", scale + concat, "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    ends = np.cumsum([seconds for _, _, seconds in blocks])  # the true boundaries (to a frame)

    tl = rec.timeline(video)
    # A window straddling a cut between two clips sees neither action well: an "uncertain" stretch no longer than
    # one window at a boundary is a fair answer there; anything else must be the stitched classes, in order.
    found = [s for s in tl.segments if not (s.label == UNCERTAIN and s.end_s - s.start_s <= w)]
    labels = [s.label for s in found]
    assert labels == [b[0] for b in blocks], [s.to_dict() for s in tl.segments]
    for seg, end in zip(found[:-1], ends[:-1], strict=True):
        assert abs(seg.end_s - end) <= w, (seg, end)
    assert tl.segments[-1].end_s == pytest.approx(tl.duration_s, abs=0.05)
    assert all(s.score >= rec.uncertain_below for s in found)

    # short windows every half second: the same actions, each cut found to within a second, on a half second
    fine = rec.timeline(video, window_s=2.0, hop_s=0.5)
    found = [s for s in fine.segments if not (s.label == UNCERTAIN and s.end_s - s.start_s <= 2.0)]
    assert [s.label for s in found] == [b[0] for b in blocks], [s.to_dict() for s in fine.segments]
    assert all((2 * s.start_s).is_integer() for s in fine.segments)
    for seg, end in zip(found[:-1], ends[:-1], strict=True):
        assert abs(seg.end_s - end) <= 1.0, (seg, end)

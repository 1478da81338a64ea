"""Training writes every artifact from the same run; reloads give identical outputs; evaluation; --resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO

from har.config import ModelConfig, Sampling
from har.data import dataset as data
from har.errors import DatasetError
from har.evaluation.evaluate import metrics, predict_frames
from har.modeldir import load_model
from har.train.checkpoints import HISTORY_FIELDS
from har.train.options import TrainOptions
from har.train.schedule import lr_at

# The small from-scratch recipe these tests train (har train's defaults are the shipped imagenet recipe): they
# check what a run does (resuming, refitting, mixup, averaging), not how well it learns, so 8 frames of 32 px do,
# a tenth of the tiny model's pixels per clip. (tiny_model, which other files read, keeps 20 frames of 64 px.)
SMALL = ("--preset", "default", "--size", "32", "--frames", "8", "--no-refit")


def test_one_epoch_writes_every_artifact(tiny_model, tiny_dataset):
    assert {p.name for p in tiny_model.iterdir()} == {"model.keras", "config.json", "history.csv", "metrics.json",
                                                      "model.onnx"}
    config = ModelConfig.load(tiny_model)
    assert config.arch == "lrcn" and config.preset == "default"
    assert config.classes == ("Archery", "PlayingPiano", "Surfing")
    assert (config.frames, config.size, config.seed, config.epochs, config.best_epoch) == (20, 64, 0, 1, 1)
    assert set(config.split) == {"train", "validation", "test"}
    assert all(len(config.split[s]) == 3 for s in config.split)  # one of three groups per class on each side
    assert config.params > 0 and config.train_seconds > 0 and 1.0 < config.whole_clip_window_s < 20.0
    assert {"python", "tensorflow", "keras", "opencv"} <= set(config.versions)
    with open(tiny_model / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and tuple(rows[0]) == HISTORY_FIELDS
    assert float(rows[0]["epoch_seconds"]) > 0 and float(rows[0]["learning_rate"]) > 0
    m = json.loads((tiny_model / "metrics.json").read_text())
    assert m["clips"] == 6 and m["classes"] == list(config.classes)
    assert {"accuracy", "macro_f1", "per_class", "confusion"} <= set(m)
    assert np.array(m["confusion"]).sum() == 6


def test_reloaded_model_reproduces_the_stored_test_metrics(tiny_model, tiny_dataset, tmp_path):
    model, config = load_model(tiny_model)
    index = data.index_dataset(tiny_dataset)
    test = data.clips_of(index, config.split["test"])
    frames = data.load_frames(test, Sampling(config.frames, config.size), tmp_path)
    probs = predict_frames(model, frames)
    again, _ = load_model(tiny_model)
    np.testing.assert_array_equal(probs, predict_frames(again, frames))  # identical outputs, reload to reload
    stored = json.loads((tiny_model / "metrics.json").read_text())
    recomputed = metrics(index.labels(test), probs.argmax(axis=1), config.classes)
    assert recomputed["confusion"] == stored["confusion"]
    assert recomputed["accuracy"] == stored["accuracy"]


def test_metrics_match_a_hand_computed_case():
    # true:  A A A B B C     predicted: A A B B C C
    m = metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ("A", "B", "C"))
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (m["per_class"][k] for k in "ABC")
    assert (a["precision"], a["recall"], a["support"]) == (1.0, pytest.approx(2 / 3), 3)
    assert (b["precision"], b["recall"]) == (0.5, 0.5)
    assert (c["precision"], c["recall"]) == (0.5, 1.0)
    assert a["f1"] == pytest.approx(0.8) and b["f1"] == pytest.approx(0.5) and c["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    never = metrics([0, 1], [0, 0], ("A", "B"))
    assert never["per_class"]["B"]["precision"] == 0.0  # never predicted: 0, not NaN


def test_evaluate_cli_json_and_class_mismatch(tiny_model, tiny_dataset, tmp_path, cli):
    out = cli("evaluate", "--model", str(tiny_model), "--data", str(tiny_dataset), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["clips"] == 18 and result["classes"] == ["Archery", "PlayingPiano", "Surfing"]
    assert {"accuracy", "macro_f1", "per_class", "confusion"} <= set(result)
    assert sum(v["support"] for v in result["per_class"].values()) == 18

    other = tmp_path / "other"
    (other / "Archery").mkdir(parents=True)
    (other / "Juggling").mkdir()
    for cls in ("Archery", "Juggling"):
        src = next((tiny_dataset / "Archery").iterdir())
        (other / cls / src.name).symlink_to(src.resolve())
    with pytest.raises(DatasetError, match="Juggling not among the model's classes"):
        from har.evaluation.evaluate import evaluate_dir

        evaluate_dir(tiny_model, other, cache_dir=tmp_path / "c")
    mismatch = cli("evaluate", "--model", str(tiny_model), "--data", str(other))
    assert mismatch.returncode == 1 and mismatch.stderr.startswith("error: The dataset's classes do not match")
    missing = cli("evaluate", "--model", "nosuchmodel", "--data", str(other))
    assert missing.returncode == 1 and "No model named or found at 'nosuchmodel'" in missing.stderr


def test_lr_schedule_warms_up_then_decays():
    opts = TrainOptions(arch="lrcn", data=REPO, out=REPO, epochs=10, lr=1e-3, warmup_epochs=2)
    lrs = [lr_at(e, opts) for e in range(10)]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] < 2e-4


def test_resume_continues_a_killed_run(tiny_dataset, tmp_path, cli):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "har", "train", "--arch", "lrcn", *SMALL, "--data", str(tiny_dataset), "--out",
            str(out), "--epochs", "3", "--batch-size", "4", "--no-export"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    state = out / "_resume" / "state.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)  # the small recipe's epochs are short: kill it before it finishes
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert 1 <= killed_at < 3
    before = (out / "history.csv").read_text().splitlines()[: killed_at + 1]
    assert not (out / "config.json").exists()  # an unfinished run is not a model yet

    done = cli(*args[3:], "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 4  # header + 3 epochs: nothing lost, nothing repeated
    assert history[: killed_at + 1] == before  # finished epochs kept as they were
    assert [int(r.split(",")[0]) for r in history[1:]] == [1, 2, 3]
    assert ModelConfig.load(out).epochs == 3
    assert not (out / "_resume").exists()

    again = cli(*args[3:], "--resume")
    assert again.returncode == 1 and "Nothing to resume" in again.stderr


def test_mixup_and_group_norm_options_train_and_are_recorded(tiny_dataset, tmp_path, cli):
    out = tmp_path / "mixed"
    done = cli("train", "--arch", "lrcn", *SMALL, "--data", str(tiny_dataset), "--out", str(out), "--epochs", "1",
                   "--batch-size", "4", "--mixup", "0.4", "--norm", "group", "--no-export")
    assert done.returncode == 0, done.stderr[-3000:]
    config = ModelConfig.load(out)
    assert config.hyper["mixup"] == 0.4 and config.hyper["norm"] == "group"
    model, _ = load_model(out)
    import keras

    inner = [getattr(layer, "layer", layer) for layer in model.layers]
    assert any(isinstance(layer, keras.layers.GroupNormalization) for layer in inner)
    with open(out / "history.csv") as f:
        row = next(csv.DictReader(f))
    assert 0.0 <= float(row["accuracy"]) <= 1.0 and float(row["val_loss"]) > 0  # soft labels, same history schema
    assert json.loads((out / "metrics.json").read_text())["clips"] == 6


def test_weight_average_is_the_mean_of_the_folded_epochs_and_survives_a_restart(tmp_path):
    import keras

    from har.train.checkpoints import avg_count, load_average, update_average

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    seen = []
    for k in range(3):
        weights = [np.full_like(w, k + 1.5) for w in model.get_weights()]
        model.set_weights(weights)
        seen.append(weights)
        update_average(model, tmp_path)  # each call reads the file back: a restart in between changes nothing
    assert avg_count(tmp_path) == 3
    for avg, *per_epoch in zip(load_average(tmp_path), *seen, strict=True):
        np.testing.assert_allclose(avg, np.mean(per_epoch, axis=0))
    assert [p.name for p in tmp_path.iterdir()] == ["average.npz"]


@pytest.mark.parametrize("per_frame", [False, True])
def test_batch_norm_statistics_are_recomputed_from_the_clips(per_frame):
    import keras

    from har.train.checkpoints import recompute_batch_norm

    inputs = keras.Input((2, 4, 4, 3), dtype="uint8")
    x = keras.layers.Rescaling(1.0)(inputs)
    first = keras.layers.BatchNormalization(momentum=0.9)
    x = keras.layers.TimeDistributed(first)(x) if per_frame else first(x)  # (the LRCN wraps it per frame)
    x = keras.layers.Dense(3, kernel_initializer="ones")(x)  # a second normalisation sees the first one's output
    second = keras.layers.BatchNormalization(momentum=0.9)
    model = keras.Model(inputs, second(x))
    clips = np.random.default_rng(0).integers(0, 256, (40, 2, 4, 4, 3), dtype=np.uint8)
    recompute_batch_norm(model, clips, batch_size=16)
    pixels = clips.astype(np.float64).reshape(-1, 3)  # every position of every frame of every clip
    np.testing.assert_allclose(np.asarray(first.moving_mean), pixels.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(first.moving_variance), pixels.var(axis=0), rtol=1e-4)
    normalised = (pixels - pixels.mean(axis=0)) / np.sqrt(pixels.var(axis=0) + first.epsilon)
    summed = normalised.sum(axis=1)  # the Dense layer of ones, on the first layer's new output
    np.testing.assert_allclose(np.asarray(second.moving_mean), np.full(3, summed.mean()), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(second.moving_variance), np.full(3, summed.var()), rtol=1e-4)


def test_averaged_run_ships_the_average_and_says_so(tiny_dataset, tmp_path, cli):
    out = tmp_path / "avg"
    done = cli("train", "--arch", "lrcn", *SMALL, "--data", str(tiny_dataset), "--out", str(out), "--epochs", "3",
                   "--batch-size", "4", "--average-last", "2", "--no-export")
    assert done.returncode == 0, done.stderr[-3000:]
    config = ModelConfig.load(out)
    assert config.hyper["shipped"] == "average of epochs 2-3" and config.epochs == 3
    assert 0 < config.hyper["average_val_loss"] and 0 <= config.hyper["average_val_accuracy"] <= 1
    model, _ = load_model(out)
    probs = predict_frames(model, np.zeros((2, config.frames, config.size, config.size, 3), np.uint8))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    refused = cli("train", "--arch", "lrcn", *SMALL, "--data", str(tiny_dataset), "--out", str(tmp_path / "x"),
                  "--epochs", "3", "--average-last", "4")
    assert refused.returncode == 1
    assert refused.stderr == "error: --average-last 4: it must be between 0 and the number of epochs (3).\n"


def test_refit_trains_on_training_and_validation_groups_and_resumes_to_the_same_model(tiny_dataset, tmp_path, cli):
    """--refit: a second, fresh model on training + validation groups for the best epoch's count of epochs, on the
    same schedule; it ships, logged in refit_history.csv. Killed during that phase, --resume gives the same model."""
    def args(out):
        return ["train", "--arch", "lrcn", *SMALL, "--data", str(tiny_dataset), "--out", str(out), "--epochs", "3",
                "--batch-size", "4", "--refit", "--no-export"]

    whole = tmp_path / "whole"
    done = cli(*args(whole))
    assert done.returncode == 0, done.stderr[-3000:]
    config = ModelConfig.load(whole)
    with open(whole / "history.csv") as f:
        validated = list(csv.DictReader(f))
    with open(whole / "refit_history.csv") as f:
        refit = list(csv.DictReader(f))
    assert len(validated) == 3 and 1 <= config.best_epoch <= 3
    assert tuple(refit[0]) == ("epoch", "loss", "accuracy", "learning_rate", "epoch_seconds")  # no validation
    assert [int(r["epoch"]) for r in refit] == list(range(1, config.best_epoch + 1))
    assert [r["learning_rate"] for r in refit] == [r["learning_rate"] for r in validated[: config.best_epoch]]
    index = data.index_dataset(tiny_dataset)
    fitted = data.clips_of(index, config.split["train"] + config.split["validation"])
    assert config.hyper["refit"]["clips"] == len(fitted) == 12 and config.hyper["refit"]["epochs"] == config.best_epoch
    assert config.hyper["shipped"] == f"refit on training + validation groups, {config.best_epoch} epochs"
    assert config.train_seconds == pytest.approx(
        sum(float(r["epoch_seconds"]) for r in validated + refit), abs=0.2)
    assert json.loads((whole / "metrics.json").read_text())["clips"] == 6  # the test groups, still unseen

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "har", *args(killed)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    refit_dir = killed / "_resume" / "refit"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not refit_dir.is_dir():
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "config.json").exists()
    resumed = cli(*args(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _same_columns(killed / "history.csv", whole / "history.csv", skip="epoch_seconds")
    assert _same_columns(killed / "refit_history.csv", whole / "refit_history.csv", skip="epoch_seconds")
    a, _ = load_model(whole)
    b, _ = load_model(killed)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)

    refused = cli("train", "--arch", "lrcn", *SMALL, "--data", str(tiny_dataset), "--out", str(tmp_path / "x"),
                  "--epochs", "3", "--refit", "--average-last", "2")
    assert refused.returncode == 1 and "--refit and --average-last do not go together" in refused.stderr


def _same_columns(a, b, skip: str) -> bool:
    """Two CSV logs equal in every column but ``skip`` (timings differ from run to run)."""
    with open(a) as fa, open(b) as fb:
        ra, rb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    return [{k: v for k, v in r.items() if k != skip} for r in ra] == [{k: v for k, v in r.items() if k != skip}
                                                                        for r in rb]


def test_a_run_without_export_and_open_set_says_so_and_serves_on_tensorflow(tiny_dataset, frame_cache, tmp_path,
                                                                           cli):
    """``export=False, openset=False`` (``--no-export --no-openset``): no ONNX copy, no familiarity score, both
    recorded in config.hyper; the Recognizer's ``auto`` runtime serves it on TensorFlow, answers without familiarity."""
    from har import Recognizer
    from har.train.fit import train

    out = tmp_path / "bare"
    out.mkdir()
    (out / "openset.npz").write_bytes(b"an earlier model's score")  # must not be left beside the new model
    config = train(TrainOptions(arch="lrcn", preset="imagenet", data=tiny_dataset, out=out, epochs=1, batch_size=4,
                                frames=8, size=32, encoder_blocks=4, export=False, openset=False,
                                cache_dir=frame_cache))
    assert {p.name for p in out.iterdir()} == {"model.keras", "config.json", "history.csv", "metrics.json"}
    assert config.openset == {} and config.hyper["export"] is False and config.hyper["openset"] is False
    assert ModelConfig.load(out) == config
    recognizer = Recognizer(out, runtime="auto")
    clip = next((tiny_dataset / "Surfing").iterdir())
    answer = recognizer.classify(clip)
    assert recognizer.runtime == "keras" and recognizer.familiarity is None
    assert answer.familiarity is None and not answer.unfamiliar
    assert sorted(s.label for s in answer.top) == sorted(config.classes)
    assert sum(s.score for s in answer.top) == pytest.approx(1.0, abs=1e-4)

    # its familiarity score fitted afterwards (python -m har openset): the file, the entry, the record no longer
    # saying it has none; then answers carry a familiarity
    done = cli("openset", "--model", str(out), "--data", str(tiny_dataset), "--cache-dir", str(frame_cache))
    assert done.returncode == 0, done.stderr[-3000:]
    fitted = ModelConfig.load(out)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == fitted.openset
    assert (out / "openset.npz").is_file() and fitted.openset["method"] and "openset" not in fitted.hyper
    assert fitted.hyper["export"] is False and fitted.split == config.split
    assert Recognizer(out, runtime="auto").classify(clip).familiarity is not None

"""``python -m har train --like DIR``: the recipe a model directory records, printed (``--dry-run --json``) and
trained again; flags beside it win; ``har train``'s defaults are the shipped recipe; the one retraining command."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from har.config import ModelConfig
from har.modeldir import MODELS_ROOT, load_model
from har.train.recipe import retrain_command

SHIPPED = ("lrcn", "convlstm")
# The options a config.json records only when they are not at their defaults, and those defaults.
UNRECORDED = {"average_last": 0, "export": True, "openset": True, "others": None}


def run(cli, *argv: str) -> tuple[int, str, str]:
    """``python -m har ARGV`` in this process (conftest's ``cli``): exit status, stdout, stderr."""
    done = cli(*argv)
    return done.returncode, done.stdout, done.stderr


def dry_run(cli, *argv: str) -> dict:
    code, out, err = run(cli, "train", *argv, "--dry-run", "--json")
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def assert_is_the_recipe_of(printed: dict, config: dict) -> None:
    """Every key printed is config.json's key with config.json's value (the data folder: the one it names)."""
    assert set(printed) == {"arch", "preset", "frames", "size", "encoder", "encoder_blocks", "min_window_s", "seed",
                            "data", "hyper"}
    for key, value in printed.items():
        if key == "data":
            assert Path(value).name == config["data"] and Path(value).is_dir(), value
        elif key != "hyper":
            assert value == config[key], key
    recorded = config["hyper"]
    for key, value in printed["hyper"].items():
        if key == "refit":  # the record says what the refit phase did; the recipe, that it runs
            assert value is ("refit" in recorded)
        elif key == "others" and value is not None:  # the other actions' folder: the one it names
            assert Path(value).name == recorded[key] and Path(value).is_dir(), value
        elif key in recorded:
            assert value == recorded[key], key
        else:
            assert value == UNRECORDED[key], key
    # every option the run records is printed (the rest of hyper says what the run gave: epochs, device, ...)
    assert {"batch_size", "lr", "warmup_epochs", "max_epochs", "patience", "stop_from_epoch", "weight_decay",
            "mixup", "norm", "validation", "test", "strategy"} <= set(printed["hyper"])


@pytest.mark.parametrize("name", SHIPPED)
def test_like_a_shipped_model_prints_the_recipe_its_config_records(name, ucf, cli):
    config = json.loads((MODELS_ROOT / name / "config.json").read_text())
    printed = dry_run(cli, "--like", f"models/{name}")
    assert_is_the_recipe_of(printed, config)
    assert (printed["preset"], printed["size"], printed["encoder_blocks"]) == ("imagenet", 128, 16)
    # by name too, and har train's defaults (no --like) are the shipped recipe of --arch
    assert dry_run(cli, "--like", name) == printed
    assert dry_run(cli, "--arch", name, "--out", "elsewhere") == printed


def test_flags_given_beside_like_win_over_the_recipe(ucf, tiny_dataset, cli):
    config = json.loads((MODELS_ROOT / "lrcn" / "config.json").read_text())
    printed = dry_run(cli, "--like", "models/lrcn", "--size", "64", "--no-refit", "--epochs", "3", "--lr", "0.002",
                      "--no-export", "--data", str(tiny_dataset))
    assert (printed["size"], printed["data"]) == (64, str(tiny_dataset))
    assert printed["hyper"]["refit"] is False and printed["hyper"]["export"] is False
    assert (printed["hyper"]["max_epochs"], printed["hyper"]["lr"]) == (3, 0.002)
    kept = {k: v for k, v in printed.items() if k not in ("size", "data", "hyper")}
    assert kept == {k: config[k] for k in kept}  # the rest as recorded
    assert printed["hyper"]["patience"] == config["hyper"]["patience"]
    # for the convlstm, whose recorded schedule differs from the lrcn's, an override of the architecture alone
    assert dry_run(cli, "--like", "models/convlstm", "--arch", "lrcn")["hyper"]["max_epochs"] == \
        json.loads((MODELS_ROOT / "convlstm" / "config.json").read_text())["hyper"]["max_epochs"]


def test_a_directory_without_a_recipe_and_missing_data_are_clear_errors(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    code, out, err = run(cli, "train", "--like", str(tmp_path / "empty"), "--dry-run", "--json")
    assert code == 1 and out == ""
    assert err == f"error: --like {tmp_path / 'empty'}: {tmp_path / 'empty'} has no config.json, so it records no " \
                  "recipe to train with (give a trained model directory such as models/lrcn).\n"
    code, _, err = run(cli, "train", "--like", str(tmp_path / "nowhere"), "--dry-run")
    assert code == 1 and err.startswith(f"error: --like {tmp_path / 'nowhere'}: no such model directory")

    elsewhere = tmp_path / "moved"
    elsewhere.mkdir()
    config = json.loads((MODELS_ROOT / "lrcn" / "config.json").read_text())
    (elsewhere / "config.json").write_text(json.dumps({**config, "data": "no-such-data"}))
    code, _, err = run(cli, "train", "--like", str(elsewhere), "--dry-run")
    assert code == 1
    assert err.startswith("error: The dataset 'no-such-data' the recipe was trained on is not in ") and \
        err.endswith(": give its folder with --data DIR.\n")
    (elsewhere / "config.json").write_text(json.dumps({**config, "data": ""}))
    code, _, err = run(cli, "train", "--like", str(elsewhere), "--dry-run")
    assert code == 1 and err == "error: The recipe names no dataset: give its folder with --data DIR.\n"
    code, _, err = run(cli, "train", "--like", str(elsewhere), "--data", str(tmp_path / "none"), "--dry-run")
    assert code == 1 and err.startswith(f"error: No dataset folder at {tmp_path / 'none'} (--data)")

    code, _, err = run(cli, "train", "--dry-run")
    assert code == 1 and "train needs --like DIR" in err
    code, _, err = run(cli, "train", "--arch", "lrcn", "--dry-run")
    assert code == 1 and "train needs --out DIR" in err


@pytest.mark.parametrize("name", SHIPPED)
def test_the_retraining_command_is_the_one_that_prints_the_recipe(name, ucf, cli):
    command = retrain_command(MODELS_ROOT / name)
    assert command == f"python -m har train --like models/{name}"
    assert retrain_command(f"models/{name}") == command
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "har"]
    printed = dry_run(cli, *argv[4:])
    assert_is_the_recipe_of(printed, json.loads((MODELS_ROOT / name / "config.json").read_text()))


def test_the_retraining_command_of_a_directory_outside_the_repository_names_its_path(tmp_path):
    assert retrain_command(tmp_path / "mine") == f"python -m har train --like {tmp_path / 'mine'}"


def test_a_dry_run_starts_no_tensorflow(ucf):
    code = ("import sys\nfrom har.cli import main\nassert main(['train', '--like', 'models/lrcn', '--dry-run', "
            "'--json']) == 0\nprint(sorted(m for m in ('tensorflow', 'keras', 'cv2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_training_like_a_model_reproduces_it(tiny_model, tiny_dataset, frame_cache, tmp_path, cli):
    """The recipe a trained directory records trains the same model again: the same config (but the time it took),
    the same weights, the same test metrics. (From the frames tiny_model's run cached: the session's cache.)"""
    assert_is_the_recipe_of(dry_run(cli, "--like", str(tiny_model), "--data", str(tiny_dataset)),
                            json.loads((tiny_model / "config.json").read_text()))
    again = tmp_path / "again"
    code, out, err = run(cli, "train", "--like", str(tiny_model), "--out", str(again), "--data", str(tiny_dataset),
                         "--cache-dir", str(frame_cache))
    assert code == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["out"] == str(again)
    first, second = ModelConfig.load(tiny_model), ModelConfig.load(again)
    assert second.__dict__ | {"train_seconds": 0} == first.__dict__ | {"train_seconds": 0}
    assert (again / "metrics.json").read_text() == (tiny_model / "metrics.json").read_text()
    a, _ = load_model(tiny_model)
    b, _ = load_model(again)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_the_training_page_retrains_every_model_with_its_one_command():
    text = (REPO / "docs" / "training.md").read_text()
    models = sorted(d for d in MODELS_ROOT.iterdir() if (d / "config.json").is_file())
    assert len(models) >= 2
    for directory in models:
        assert re.search(rf"^{re.escape(retrain_command(directory))}(\s|$)", text, re.M), directory.name

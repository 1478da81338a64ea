"""A model directory's training recipe: the options its ``config.json`` records, where its data is, and the one
command that trains it again.

``python -m har train --like models/lrcn`` reads the recipe of ``models/lrcn/config.json`` (:func:`options_like`),
finds the dataset it names (:func:`find_data`) and retrains into the same directory; flags given beside ``--like``
win over the recorded values. Without ``--like``, ``har train --arch A`` starts from the shipped ``models/A``'s
recipe. A recipe is printed (``--dry-run --json``) in ``config.json``'s own keys (:func:`recipe_json`): the
sampling and encoder at the top, the optimisation under ``hyper``.

No TensorFlow here: a recipe is read, merged and printed in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from har.config import CONFIG_FILE, ModelConfig
from har.errors import DatasetError, HarError
from har.modeldir import MODELS_ROOT
from har.train.options import TrainOptions

REPO = Path(__file__).resolve().parents[2]
# Where a recorded dataset name is looked for, relative to the repository: its own data/, then the shared data
# folder beside it (../shared/data/ucf101-6 for the shipped models).
DATA_PLACES = ("data", "../shared/data")

# config.json's top-level keys that are options (TrainOptions fields of the same name) ...
TOP = ("arch", "preset", "frames", "size", "encoder", "encoder_blocks", "min_window_s", "seed")
# ... and config.hyper's keys that are options -> the TrainOptions field. ``refit`` is recorded as what the refit
# phase did (absent: none ran); ``average_last``, ``export`` and ``openset`` only when not at their defaults.
HYPER = {"batch_size": "batch_size", "lr": "lr", "warmup_epochs": "warmup_epochs", "max_epochs": "epochs",
         "patience": "patience", "stop_from_epoch": "stop_from_epoch", "weight_decay": "weight_decay",
         "mixup": "mixup", "norm": "norm", "refit": "refit", "average_last": "average_last",
         "validation": "validation", "test": "test", "strategy": "strategy", "export": "export", "openset": "openset",
         "others": "others"}
# the options a recipe sets (what ``--like`` fills in and explicit flags override)
RECIPE_OPTIONS = (*TOP, *HYPER.values())


def like_dir(like: str | os.PathLike) -> Path:
    """The model directory ``--like`` names: a path (from the current folder, else from the repository), or a
    shipped model's name (``lrcn``). Raises :class:`HarError` when there is none or it records no recipe."""
    p = Path(like)
    for candidate in (p, MODELS_ROOT / p, REPO / p):
        if candidate.is_dir():
            if not (candidate / CONFIG_FILE).is_file():
                raise HarError(f"--like {like}: {candidate} has no {CONFIG_FILE}, so it records no recipe to train "
                               "with (give a trained model directory such as models/lrcn).")
            return candidate
    raise HarError(f"--like {like}: no such model directory (give one such as models/lrcn, or a shipped model's "
                   "name: lrcn, convlstm).")


def shipped_dir(arch: str) -> Path:
    """The shipped model of ``arch`` (``models/<arch>``), whose recipe is ``har train``'s default."""
    directory = MODELS_ROOT / arch
    if not (directory / CONFIG_FILE).is_file():
        raise HarError(f"har train takes its defaults from the shipped {directory / CONFIG_FILE}, which is missing: "
                       "give --like DIR (a trained model directory) to train with its recipe.")
    return directory


def recipe_options(config: ModelConfig) -> dict:
    """The options ``config`` records, by :class:`TrainOptions` field (a missing hyper entry: the field's default)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainOptions)}
    options = {name: getattr(config, name) for name in TOP}
    for key, name in HYPER.items():
        value = config.hyper.get(key, defaults[name])
        options[name] = bool(value) if name == "refit" else value  # a refit's record -> it ran
    return options


def find_data(name: str) -> Path:
    """The folder of the dataset ``config.json`` names (its ``data``), looked for in :data:`DATA_PLACES`. Raises
    :class:`DatasetError` when it is in none of them."""
    if not name:
        raise DatasetError("The recipe names no dataset: give its folder with --data DIR.")
    places = [(REPO / place / name).resolve() for place in DATA_PLACES]
    for folder in places:
        if folder.is_dir():
            return folder
    raise DatasetError(f"The dataset {name!r} the recipe was trained on is not in {' or '.join(map(str, places))}: "
                       "give its folder with --data DIR.")


def options_like(directory: str | os.PathLike, data: str | os.PathLike | None = None,
                 out: str | os.PathLike | None = None, **overrides) -> TrainOptions:
    """The options that train ``directory``'s model again: its recipe, ``overrides`` (any :class:`TrainOptions`
    field) winning; on ``data`` (default: :func:`find_data` of its recorded dataset), into ``out`` (default: the
    directory itself). Raises :class:`DatasetError` for a data folder that is not there."""
    directory = Path(directory)
    config = ModelConfig.load(directory)
    if data is None:
        data = find_data(config.data)
    elif not Path(data).is_dir():
        raise DatasetError(f"No dataset folder at {data} (--data): give the folder with a sub-folder per class.")
    options = {**recipe_options(config), **overrides}
    if options.get("others") and not Path(options["others"]).is_dir():  # a recorded dataset name
        options["others"] = find_data(str(options["others"]))
    return TrainOptions(**{**options, "data": Path(data), "out": Path(out or directory),
                           "others": Path(options["others"]) if options.get("others") else None})


def options_of(config: ModelConfig, data: str | os.PathLike, out: str | os.PathLike,
               cache_dir: str | os.PathLike | None = None) -> TrainOptions:
    """The options ``config`` was trained with (its recipe), on ``data``, writing to ``out``; without the clips of
    other actions its open-set gate learned from (``others``: give them where they are needed)."""
    return TrainOptions(**{**recipe_options(config), "data": Path(data), "out": Path(out),
                           "cache_dir": Path(cache_dir) if cache_dir else None, "others": None})


def recipe_json(opts: TrainOptions) -> dict:
    """``opts``' recipe in ``config.json``'s keys: the sampling, encoder, seed and data folder at the top level, the
    optimisation under ``hyper`` (``refit``: whether a refit phase follows)."""
    return {**{name: getattr(opts, name) for name in TOP}, "data": str(opts.data),
            "hyper": {key: str(getattr(opts, name)) if name == "others" and opts.others else getattr(opts, name)
                      for key, name in HYPER.items()}}


def retrain_command(directory: str | Path) -> str:
    """The command that retrains the model stored in ``directory`` with the recipe its ``config.json`` records, from
    the repository's top folder (a shipped model: ``python -m har train --like models/lrcn``)."""
    path = Path(directory)
    try:
        shown = path.resolve().relative_to(REPO).as_posix()
    except ValueError:  # outside the repository: its own path
        shown = str(path)
    return f"python -m har train --like {shown}"

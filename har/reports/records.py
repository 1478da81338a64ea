"""Stored model directories read into records (:class:`ModelRecord`), without loading any model.

Each record holds what training and the benchmarks wrote: ``config.json``, ``history.csv`` (and
``refit_history.csv``), ``metrics.json``, the size of ``model.keras`` and, when they ran, ``benchmark.json`` and
``timeline.json``. A missing or incomplete directory becomes a record whose ``problems`` say what is wrong, so every
page built from the records still renders.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from har.config import CONFIG_FILE, ModelConfig
from har.errors import HarError
from har.evaluation.explain import STORED_IMAGE
from har.modeldir import HISTORY_FILE, METRICS_FILE, MODEL_FILE, MODELS_ROOT, REFIT_HISTORY_FILE
from har.train.recipe import retrain_command

BENCHMARK_FILE = "benchmark.json"  # benchmarks/bench_models.py --write
TIMELINE_FILE = "timeline.json"  # benchmarks/bench_timeline.py --write
MAIN = ("lrcn", "convlstm")  # the two shipped models, compared everywhere
# Shown beside them in the table: the same architectures trained from scratch (no ImageNet encoder) and the
# original write-ups' networks.
OTHERS = ("lrcn_scratch", "convlstm_scratch", "lrcn_tutorial", "convlstm_tutorial")
VARIANTS = {"tutorial": "tutorial", "default": "from scratch", "imagenet": "ImageNet encoder"}  # preset -> label
DISPLAY = {"lrcn": "LRCN", "convlstm": "ConvLSTM"}
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
REFIT_COLUMNS = ("epoch", "loss", "accuracy")


@dataclass
class ModelRecord:
    """What one model directory holds, read without loading the model. ``None`` fields are missing or unreadable."""

    name: str  # directory name: "lrcn", "convlstm_tutorial", ...
    directory: Path
    config: ModelConfig | None = None
    history: pd.DataFrame | None = None  # one row per epoch, HISTORY_COLUMNS at least
    refit_history: pd.DataFrame | None = None  # a model refit on training + validation groups: its epochs
    metrics: dict[str, Any] | None = None  # har.evaluation.evaluate schema, on the test groups
    benchmark: dict[str, Any] | None = None  # {"forward_ms", "onnx_forward_ms", "batch", "device", "measured"}
    size_bytes: int | None = None  # model.keras on disk
    timeline: dict[str, Any] | None = None  # timeline.json: segments found on test-group montages
    explained: Path | None = None  # explained.jpg: why it answers, one example clip per class (python -m har explain)
    problems: list[str] = field(default_factory=list)  # one sentence per missing or unreadable file

    @property
    def arch(self) -> str:
        return self.config.arch if self.config else self.name.split("_")[0]

    @property
    def label(self) -> str:
        base = DISPLAY.get(self.arch, self.arch)
        if self.name in MAIN:
            return base
        suffix = self.name.rsplit("_", 1)[-1]
        preset = self.config.preset if self.config else {"tutorial": "tutorial", "scratch": "default"}.get(suffix)
        return f"{base} ({VARIANTS[preset]})" if preset in VARIANTS else f"{base} ({self.name})"

    @property
    def complete(self) -> bool:
        return not self.problems


def load_record(name: str, root: str | os.PathLike | None = None) -> ModelRecord:
    """Read ``root/name`` (``models/`` by default). Never raises for missing or broken files: see ``problems``."""
    directory = Path(root if root is not None else MODELS_ROOT) / name
    rec = ModelRecord(name=name, directory=directory)
    shown = f"{directory.parent.name}/{name}"  # no absolute server path in a public page
    if not directory.is_dir():
        rec.problems.append(f"{shown} does not exist: the {rec.label} model has not been trained or shipped.")
        return rec
    missing = [f for f in (CONFIG_FILE, MODEL_FILE, HISTORY_FILE, METRICS_FILE) if not (directory / f).is_file()]
    if missing:  # one sentence for the usual case, a training run that has not finished (or never ran)
        rec.problems.append(f"{shown} is incomplete (training unfinished?): no {', '.join(missing)}.")
    if CONFIG_FILE not in missing:
        try:
            rec.config = ModelConfig.load(directory)
        except HarError as exc:
            rec.problems.append(str(exc).replace(str(directory), shown))
    if MODEL_FILE not in missing:
        rec.size_bytes = (directory / MODEL_FILE).stat().st_size
    if HISTORY_FILE not in missing:
        rec.history = _read_history(directory / HISTORY_FILE, shown, rec.problems)
    if (directory / REFIT_HISTORY_FILE).is_file():  # optional: only a refit model has one
        rec.refit_history = _read_history(directory / REFIT_HISTORY_FILE, shown, rec.problems,
                                          columns=REFIT_COLUMNS)
    if METRICS_FILE not in missing:
        rec.metrics = _read_json(directory / METRICS_FILE, shown, rec.problems,
                                 required=("accuracy", "macro_f1", "classes", "per_class", "confusion"))
    if (directory / BENCHMARK_FILE).is_file():  # optional: absent means "not measured", not a problem
        rec.benchmark = _read_json(directory / BENCHMARK_FILE, shown, rec.problems, required=("forward_ms",))
    if (directory / TIMELINE_FILE).is_file():  # optional: benchmarks/bench_timeline.py --write
        rec.timeline = _read_json(directory / TIMELINE_FILE, shown, rec.problems, required=("f1", "timeline"))
    if (directory / STORED_IMAGE).is_file():  # optional: the dashboard shows it when stored
        rec.explained = directory / STORED_IMAGE
    return rec


def load_records(names: Sequence[str] = MAIN + OTHERS, root: str | os.PathLike | None = None) -> list[ModelRecord]:
    return [load_record(n, root) for n in names]


def _read_history(path: Path, shown: str, problems: list[str],
                  columns: Sequence[str] = HISTORY_COLUMNS) -> pd.DataFrame | None:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        problems.append(f"{shown}/{path.name} is not a readable CSV: {exc}.")
        return None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        problems.append(f"{shown}/{path.name} lacks columns: {', '.join(missing)}.")
        return None
    if df.empty:
        problems.append(f"{shown}/{path.name} has no epoch yet.")
        return None
    return df.sort_values("epoch").reset_index(drop=True)


def _read_json(path: Path, shown: str, problems: list[str], required: Sequence[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(f"{shown}/{path.name} is not readable JSON: {exc}.")
        return None
    missing = [k for k in required if k not in data] if isinstance(data, dict) else list(required)
    if missing:
        problems.append(f"{shown}/{path.name} lacks: {', '.join(missing)}.")
        return None
    return data


def notice(records: Sequence[ModelRecord]) -> str:
    """Markdown listing what is missing, empty when every directory is complete; for a shipped model that is
    missing, the one command that trains it again."""
    lines = [f"- **{r.label}**: {p}" for r in records for p in r.problems]
    if not lines:
        return ""
    retrain = [f"`{retrain_command(r.directory)}`" for r in records if r.name in MAIN and r.problems]
    return ("**Some stored results are missing; the figures show what is there.**\n\n" + "\n".join(lines)
            + (f"\n\nTo train a shipped model again: {', '.join(retrain)} (see *About*)." if retrain else ""))


def refit_shipped(records: Sequence[ModelRecord]) -> bool:
    """True when one of the two main models ships a refit on training + validation groups (``train --refit``)."""
    return any(r.refit_history is not None for r in records if r.name in MAIN)


def refit_epochs(record: ModelRecord) -> int | None:
    """Epochs of the refit phase when the shipped model was refit on training + validation (``train --refit``)."""
    return len(record.refit_history) if record.refit_history is not None else None


def averaged_epochs(config: ModelConfig) -> tuple[int, int] | None:
    """(first, last) epoch when the shipped weights are an average of epochs (``train --average-last``)."""
    shipped = str((config.hyper or {}).get("shipped", ""))
    m = re.fullmatch(r"average of epochs (\d+)-(\d+)", shipped)
    if not m or not isinstance(config.hyper.get("average_val_loss"), (int, float)):
        return None
    return int(m.group(1)), int(m.group(2))

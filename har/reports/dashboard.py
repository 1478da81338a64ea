"""Turn stored model directories (and recognition results) into pandas tables and plotly figures.

The Compare models tab reads only what training wrote: ``config.json``, ``history.csv``, ``metrics.json``, the size
of ``model.keras`` and, when the benchmark ran, ``benchmark.json``. Nothing is trained or evaluated here. A missing
or incomplete directory becomes a :class:`ModelRecord` whose ``problems`` say what is wrong; every table and figure
is still built from whatever the other directories hold, so the tab always renders.

The Recognize tab's timeline and segments table are drawn here too, from ``Analysis.to_dict()`` results, so the app
stays a thin UI and this module is the only one that knows plotly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from har.config import CONFIG_FILE, ModelConfig
from har.errors import HarError
from har.evaluation.explain import STORED_IMAGE
from har.modeldir import HISTORY_FILE, METRICS_FILE, MODEL_FILE, MODELS_ROOT, REFIT_HISTORY_FILE
from har.serve.results import UNCERTAIN

BENCHMARK_FILE = "benchmark.json"
TIMELINE_FILE = "timeline.json"  # benchmarks/bench_timeline.py --write
MAIN = ("lrcn", "convlstm")  # the two shipped models, compared everywhere
# Shown beside them in the table: the same architectures trained from scratch (no ImageNet encoder; the ships before
# this one) and the original write-ups' networks.
OTHERS = ("lrcn_scratch", "convlstm_scratch", "lrcn_tutorial", "convlstm_tutorial")
VARIANTS = {"tutorial": "tutorial", "default": "from scratch", "imagenet": "ImageNet encoder"}  # preset -> label
DISPLAY = {"lrcn": "LRCN", "convlstm": "ConvLSTM"}
MODEL_COLORS = {"lrcn": "#1f77b4", "convlstm": "#ff7f0e"}  # one colour per architecture in every figure
UNKNOWN_COLOR = "#8c8c8c"  # stretches of none of the known actions
CLASS_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
REFIT_COLUMNS = ("epoch", "loss", "accuracy")
NOT_MEASURED = "not measured"


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
    """Markdown listing what is missing, empty when every directory is complete."""
    lines = [f"- **{r.label}**: {p}" for r in records for p in r.problems]
    if not lines:
        return ""
    return ("**Some stored results are missing; the figures show what is there.**\n\n" + "\n".join(lines)
            + "\n\nTrain with `python -m har train --arch lrcn --data ../shared/data/ucf101-6 --out models/lrcn` "
            "(see *About*).")


# ---- tables -------------------------------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def summary_table(records: Sequence[ModelRecord]) -> pd.DataFrame:
    """One row per model directory, display-ready strings ("—" where a file is missing)."""
    rows = []
    for r in records:
        m, c, b = r.metrics, r.config, r.benchmark
        if b and isinstance(b.get("forward_ms"), (int, float)):  # TensorFlow; ONNX Runtime too when measured
            forward = f"{b['forward_ms']:.1f}"
            if isinstance(b.get("onnx_forward_ms"), (int, float)):
                forward = f"TensorFlow {forward}, ONNX Runtime {b['onnx_forward_ms']:.1f}"
            forward += f" ({b['device']})" if b.get("device") else ""
        else:
            forward = NOT_MEASURED
        span = _averaged(c) if c else None
        refit = _refit_epochs(r)
        rows.append({
            "Model": r.label,
            "Test accuracy": f"{m['accuracy']:.3f}" if m else "—",
            "Macro-F1": f"{m['macro_f1']:.3f}" if m else "—",
            "Test clips": str(m.get("clips", "—")) if m else "—",
            "Parameters": f"{c.params:,}" if c and c.params else "—",
            "Size on disk": f"{r.size_bytes / 1e6:.1f} MB" if r.size_bytes is not None else "—",
            "Forward pass, ms/clip": forward,
            "Epochs (best)": (f"{c.epochs} ({span[0]}–{span[1]} averaged)" if span
                              else f"{c.epochs} ({c.best_epoch}) + {refit} refit" if refit
                              else f"{c.epochs} ({c.best_epoch})" if c and c.epochs else "—"),
            "Training time": _duration(c.train_seconds) if c and c.train_seconds else "—",
        })
    return pd.DataFrame(rows)


def timeline_table(records: Sequence[ModelRecord]) -> pd.DataFrame:
    """How each model's timeline finds the pieces of montages of test-group clips (``timeline.json``): the
    figures of the decoder that ships ("after") and, when stored under ``before``, of the smoothing it replaced.
    A file from before issue 18 (no ``decoder`` in its settings) is a "before" row."""
    rows = []
    for r in records:
        runs = [(r.timeline or {}).get("before"), r.timeline]
        for t in [t for t in runs if t and isinstance(t.get("timeline"), dict)]:
            rows.append({"Model": r.label, "Timeline": "after" if t["timeline"].get("decoder") else "before",
                         **_timeline_row(t)})
    return pd.DataFrame(rows)


def _timeline_row(t: Mapping[str, Any]) -> dict[str, str]:
    s = t["timeline"]
    return {"Window / hop (s)": f"{s['window_s']:g} / {s['hop_s']:g}",
            "Segments from": s.get("decoder") or s.get("smoothing", "—"),
            "Montages (pieces)": f"{t['montages']} ({t['segments']})",
            "Segment F1 @ IoU 0.5": f"{t['f1']:.3f}",
            "Precision / recall": f"{t['precision']:.3f} / {t['recall']:.3f}",
            "Mean boundary error": f"{t['mean_boundary_error_s']:.2f} s",
            "2–3 s pieces found": f"{t['short_recall']:.0%} of {t['short_pieces']}"}


def refit_shipped(records: Sequence[ModelRecord]) -> bool:
    """True when one of the two main models ships a refit on training + validation groups (``train --refit``)."""
    return any(r.refit_history is not None for r in records if r.name in MAIN)


def _refit_epochs(record: ModelRecord) -> int | None:
    """Epochs of the refit phase when the shipped model was refit on training + validation (``train --refit``)."""
    return len(record.refit_history) if record.refit_history is not None else None


def _averaged(config) -> tuple[int, int] | None:
    """(first, last) epoch when the shipped weights are an average of epochs (``train --average-last``)."""
    shipped = str((config.hyper or {}).get("shipped", ""))
    m = re.fullmatch(r"average of epochs (\d+)-(\d+)", shipped)
    if not m or not isinstance(config.hyper.get("average_val_loss"), (int, float)):
        return None
    return int(m.group(1)), int(m.group(2))


def split_table(record: ModelRecord | None) -> pd.DataFrame:
    """Group ids per class and split from a model's config (the groups never seen in training are "test")."""
    if record is None or record.config is None or not record.config.split:
        return pd.DataFrame(columns=["Class", "train", "validation", "test"])
    split = record.config.split
    rows = []
    for cls in record.config.classes:
        row = {"Class": cls}
        for name in ("train", "validation", "test"):
            groups = sorted(g.split("/", 1)[1] for g in split.get(name, []) if g.split("/", 1)[0] == cls)
            row[name] = " ".join(groups)
        rows.append(row)
    return pd.DataFrame(rows)


# ---- figures of the stored logs -----------------------------------------------------------------------------------

def _empty(message: str, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 15})
    fig.update_layout(height=height, xaxis={"visible": False}, yaxis={"visible": False}, template="plotly_white")
    return fig


def curves_figure(records: Sequence[ModelRecord]) -> go.Figure:
    """Loss and accuracy per epoch, train (solid) and validation (dashed), the models overlaid; best epoch marked.
    A model refit on training + validation groups adds its own training curves (dotted): that one ships."""
    have = [r for r in records if r.history is not None]
    if not have:
        return _empty("No training history stored yet.")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08)
    for r in have:
        h, color = r.history, MODEL_COLORS.get(r.arch, "#555")
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for split, dash in (("train", "solid"), ("validation", "dash")):
                key = metric if split == "train" else f"val_{metric}"
                fig.add_trace(go.Scatter(
                    x=h["epoch"], y=h[key], mode="lines", name=f"{r.label} {split}", legendgroup=f"{r.name}{split}",
                    showlegend=col == 1, line={"color": color, "dash": dash, "width": 2},
                    hovertemplate=f"{r.label} {split} {metric}<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>",
                ), row=1, col=col)
        best = r.config.best_epoch if r.config else 0
        span = _averaged(r.config) if r.config else None
        refit = r.refit_history
        if refit is not None:  # the shipped model: a fresh run on train + validation, as long as the best epoch
            for col, metric in ((1, "loss"), (2, "accuracy")):
                fig.add_trace(go.Scatter(
                    x=refit["epoch"], y=refit[metric], mode="lines", name=f"{r.label} refit on train+val (shipped)",
                    legendgroup=f"{r.name}refit", showlegend=col == 1, line={"color": color, "dash": "dot", "width": 3},
                    hovertemplate=f"{r.label} refit {metric}<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>",
                ), row=1, col=col)
        if span:  # the shipped weights average several epochs: mark that span at the average's own val loss
            a, b = span
            val = r.config.hyper.get("average_val_loss")
            fig.add_trace(go.Scatter(
                x=[a, b], y=[val, val], mode="lines+markers", name=f"{r.label} kept (average of epochs {a}–{b})",
                line={"color": color, "width": 5}, marker={"symbol": "star", "size": 11},
                legendgroup=f"{r.name}best",
                hovertemplate=f"{r.label}: average of epochs {a}–{b}, val loss %{{y:.3f}}<extra></extra>",
            ), row=1, col=1)
        elif best and (h["epoch"] == best).any():
            row = h[h["epoch"] == best].iloc[0]
            chose = "refit length chosen" if refit is not None else "kept"
            fig.add_trace(go.Scatter(
                x=[best], y=[row["val_loss"]], mode="markers", name=f"{r.label} {chose} (epoch {best})",
                marker={"color": color, "size": 11, "symbol": "star"}, legendgroup=f"{r.name}best",
                hovertemplate=(f"{r.label}: best validation loss at epoch {best}; the refit trained that long"
                               if refit is not None else f"{r.label}: weights kept from epoch {best}")
                + "<extra></extra>",
            ), row=1, col=1)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cross-entropy", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=420, template="plotly_white", margin={"t": 40, "b": 40, "l": 50, "r": 20},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def _with_metrics(records: Sequence[ModelRecord]) -> list[ModelRecord]:
    return [r for r in records if r.metrics is not None]


def per_class_figure(records: Sequence[ModelRecord]) -> go.Figure:
    """Precision, recall and F1 per class on the test groups, one bar per model in each group."""
    have = _with_metrics(records)
    if not have:
        return _empty("No test metrics stored yet.")
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Precision", "Recall", "F1"), shared_yaxes=True,
                        horizontal_spacing=0.04)
    for r in have:
        classes = r.metrics["classes"]
        for col, key in enumerate(("precision", "recall", "f1"), start=1):
            fig.add_trace(go.Bar(
                x=classes, y=[r.metrics["per_class"][c][key] for c in classes], name=r.label,
                marker_color=MODEL_COLORS.get(r.arch, "#555"), legendgroup=r.name, showlegend=col == 1,
                customdata=[r.metrics["per_class"][c]["support"] for c in classes],
                hovertemplate=f"{r.label} %{{x}}: {key} %{{y:.2f}} (%{{customdata}} test clips)<extra></extra>",
            ), row=1, col=col)
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(tickangle=-35)
    fig.update_layout(barmode="group", height=420, template="plotly_white", margin={"t": 40, "b": 40, "l": 40,
                      "r": 20}, legend={"orientation": "h", "y": -0.35})
    return fig


def confusion_figure(records: Sequence[ModelRecord]) -> go.Figure:
    """The models' confusion matrices side by side: colour = share of the true class, text = clip counts."""
    have = _with_metrics(records)
    if not have:
        return _empty("No confusion matrix stored yet.")
    titles = [f"{r.label}: accuracy {r.metrics['accuracy']:.2f} on {r.metrics.get('clips', '?')} clips" for r in have]
    fig = make_subplots(rows=1, cols=len(have), subplot_titles=titles, horizontal_spacing=0.14)
    for col, r in enumerate(have, start=1):
        classes = r.metrics["classes"]
        counts = np.asarray(r.metrics["confusion"], dtype=float)  # (true, predicted)
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        fig.add_trace(go.Heatmap(
            z=share, x=classes, y=classes, text=counts.astype(int), texttemplate="%{text}", zmin=0, zmax=1,
            colorscale="Blues", showscale=col == len(have), colorbar={"title": "share"},
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} clips (%{z:.0%})<extra></extra>",
        ), row=1, col=col)
        fig.update_xaxes(title_text="predicted", tickangle=-35, row=1, col=col)
        fig.update_yaxes(title_text="true" if col == 1 else None, autorange="reversed", row=1, col=col)
    fig.update_layout(height=460, template="plotly_white", margin={"t": 50, "b": 40, "l": 40, "r": 20})
    return fig


def frame_strip(clips: Mapping[str, str | os.PathLike], frames: int = 20, size: int = 64, show: int = 8,
                scale: int = 2) -> np.ndarray:
    """What the model sees: ``show`` of the ``frames`` sampled frames of one clip per class, a row per class.

    Frames are the exact model input (``size`` x ``size``), enlarged ``scale`` times without smoothing.
    Returns uint8 RGB ``(rows * size * scale, label_width + show * size * scale, 3)``.
    """
    import cv2

    from har.media.video import sample_clip

    cell = size * scale
    label_w = 150
    picks = np.linspace(0, frames - 1, min(show, frames)).round().astype(int)
    rows = []
    for cls, path in clips.items():
        clip = sample_clip(path, frames=frames, size=size)  # (frames, size, size, 3) uint8 RGB
        tiles = [cv2.resize(clip[i], (cell, cell), interpolation=cv2.INTER_NEAREST) for i in picks]
        label = np.full((cell, label_w, 3), 255, np.uint8)
        cv2.putText(label, cls, (6, cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (30, 30, 30), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, *tiles], axis=1))
    if not rows:
        return np.full((cell, label_w + len(picks) * cell, 3), 255, np.uint8)
    return np.concatenate(rows, axis=0)


# ---- figures of a recognition result ------------------------------------------------------------------------------

def class_colors(classes: Sequence[str]) -> dict[str, str]:
    return {c: CLASS_COLORS[i % len(CLASS_COLORS)] for i, c in enumerate(classes)}


def timeline_figure(results: Mapping[str, Mapping[str, Any]], uncertain_below: float | None = None) -> go.Figure:
    """Class probabilities over time, one panel per model, the recognized segments shaded and labelled.

    ``results``: model label -> ``Analysis.to_dict()`` (``per_step`` = {"t", "classes", "probs" (t, classes)} of
    ``step_s``, or ``per_second``, ``segments`` = [{start_s, end_s, label, score}]). Stretches of *none of the
    known actions* are shaded grey.
    """
    have = {k: v for k, v in results.items() if (v.get("per_step") or v.get("per_second") or {}).get("t")}
    if not have:
        return _empty("No timeline: the video is shorter than one window.", height=260)
    fig = make_subplots(rows=len(have), cols=1, shared_xaxes=True, subplot_titles=list(have),
                        vertical_spacing=0.12 if len(have) > 1 else 0.0)
    shown: set[str] = set()
    ends: list[float] = []
    for row, (name, res) in enumerate(have.items(), start=1):
        ps, step = (res["per_step"], float(res.get("step_s") or 1)) if res.get("per_step") else (res["per_second"], 1.0)
        t = np.asarray(ps["t"], dtype=float) + step / 2  # each row is one step [t, t + step): plot at its centre
        ends.append(float(res.get("duration_s") or t[-1] + step / 2))
        probs = np.asarray(ps["probs"], dtype=float)  # (len(t), classes)
        colors = class_colors(ps["classes"])
        for j, cls in enumerate(ps["classes"]):
            fig.add_trace(go.Scatter(
                x=t, y=probs[:, j], mode="lines+markers" if len(t) < 3 else "lines", name=cls, legendgroup=cls,
                showlegend=cls not in shown, line={"color": colors[cls], "width": 2},
                hovertemplate=f"{cls}: %{{y:.0%}}<extra>{name}</extra>",
            ), row=row, col=1)
            shown.add(cls)
        for seg in res.get("segments", []):
            unknown = seg["label"] == UNCERTAIN
            color = UNKNOWN_COLOR if unknown else colors.get(seg["label"], UNKNOWN_COLOR)
            fig.add_vrect(x0=seg["start_s"], x1=seg["end_s"], fillcolor=color, opacity=0.3 if unknown else 0.15,
                          line_width=0, row=row, col=1)
            fig.add_annotation(x=(seg["start_s"] + seg["end_s"]) / 2, y=1.04, text=f"{seg['label']}",
                               showarrow=False, font={"size": 11, "color": color}, yanchor="bottom",
                               xref=f"x{row if row > 1 else ''}", yref=f"y{row if row > 1 else ''}")
        if uncertain_below:
            fig.add_hline(y=uncertain_below, line={"dash": "dot", "color": "#888", "width": 1}, row=row, col=1)
        fig.update_yaxes(title_text="probability", range=[0, 1.15], row=row, col=1)
    fig.update_xaxes(range=[0, max(ends)])
    fig.update_xaxes(title_text="time (s)", row=len(have), col=1)
    fig.update_layout(height=260 + 200 * len(have), template="plotly_white", hovermode="x unified",
                      margin={"t": 40, "b": 40, "l": 50, "r": 20}, legend={"orientation": "h", "y": -0.15})
    return fig


def segments_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per recognized segment of each model: model, start, end, action, confidence."""
    rows = [
        {"Model": name, "Start (s)": round(float(s["start_s"]), 1), "End (s)": round(float(s["end_s"]), 1),
         "Action": s["label"], "Confidence": round(float(s["score"]), 3)}
        for name, res in results.items() for s in res.get("segments", [])
    ]
    return pd.DataFrame(rows, columns=["Model", "Start (s)", "End (s)", "Action", "Confidence"])

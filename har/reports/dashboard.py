"""The Compare models tab: stored model directories as pandas tables and plotly figures.

Everything here is read from what training and the benchmarks wrote (:mod:`har.reports.records`); nothing is
trained or evaluated. Every table and figure is built from whatever the directories hold, so the tab always
renders. The names the app uses from the other report modules (records, the Recognize tab's timeline) are
importable from here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from har.reports.records import (
    BENCHMARK_FILE,
    DISPLAY,
    MAIN,
    OTHERS,
    TIMELINE_FILE,
    VARIANTS,
    ModelRecord,
    averaged_epochs,
    load_record,
    load_records,
    notice,
    refit_epochs,
    refit_shipped,
)
from har.reports.style import CLASS_COLORS, MODEL_COLORS, UNKNOWN_COLOR, class_colors, empty_figure
from har.reports.timeline_plot import segments_table, timeline_figure

NOT_MEASURED = "not measured"

__all__ = [  # the Compare tab's own names, then those the app and its tests read through this module
    "NOT_MEASURED", "confusion_figure", "curves_figure", "frame_strip", "per_class_figure", "split_table",
    "summary_table", "timeline_caption", "timeline_table",
    "BENCHMARK_FILE", "CLASS_COLORS", "DISPLAY", "MAIN", "MODEL_COLORS", "OTHERS", "TIMELINE_FILE", "UNKNOWN_COLOR",
    "VARIANTS", "ModelRecord", "class_colors", "load_record", "load_records", "notice", "refit_shipped",
    "segments_table", "timeline_figure"]


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
        span = averaged_epochs(c) if c else None
        refit = refit_epochs(r)
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
    A file whose settings name no ``decoder`` is a "before" row."""
    rows = []
    for r in records:
        runs = [(r.timeline or {}).get("before"), r.timeline]
        for t in [t for t in runs if t and isinstance(t.get("timeline"), dict)]:
            rows.append({"Model": r.label, "Timeline": "after" if t["timeline"].get("decoder") else "before",
                         **_timeline_row(t)})
    return pd.DataFrame(rows)


def timeline_caption(records: Sequence[ModelRecord]) -> str:
    """The label of :func:`timeline_table`: what the montages are, from the first stored ``montage_set``."""
    montage = next((r.timeline["montage_set"] for r in records
                    if r.timeline and isinstance(r.timeline.get("montage_set"), dict)), None)
    what = "montages of test-group clips"
    if montage and montage.get("pieces") and len(montage.get("piece_s") or ()) == 2:
        low, high = montage["piece_s"]
        what += f" ({montage['pieces']} pieces of {low:g}–{high:g} s each, random classes)"
    return (f"Timelines on {what}: segments found and where they end; before: the smoothing the decoder "
            "replaced")


def _timeline_row(t: Mapping[str, Any]) -> dict[str, str]:
    s = t["timeline"]
    return {"Window / hop (s)": f"{s['window_s']:g} / {s['hop_s']:g}",
            "Segments from": s.get("decoder") or s.get("smoothing", "—"),
            "Montages (pieces)": f"{t['montages']} ({t['segments']})",
            "Segment F1 @ IoU 0.5": f"{t['f1']:.3f}",
            "Precision / recall": f"{t['precision']:.3f} / {t['recall']:.3f}",
            "Mean boundary error": f"{t['mean_boundary_error_s']:.2f} s",
            "2–3 s pieces found": f"{t['short_recall']:.0%} of {t['short_pieces']}"}


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

# ---- figures of the stored logs---------------------------------------------------------------------------------------

def curves_figure(records: Sequence[ModelRecord]) -> go.Figure:
    """Loss and accuracy per epoch, train (solid) and validation (dashed), the models overlaid; best epoch marked.
    A model refit on training + validation groups adds its own training curves (dotted): that one ships."""
    have = [r for r in records if r.history is not None]
    if not have:
        return empty_figure("No training history stored yet.")
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
        span = averaged_epochs(r.config) if r.config else None
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
        return empty_figure("No test metrics stored yet.")
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
        return empty_figure("No confusion matrix stored yet.")
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


def frame_strip(clips: Mapping[str, str | os.PathLike], *, frames: int, size: int, show: int = 8,
                scale: int = 2) -> np.ndarray:
    """What the model sees: ``show`` of the ``frames`` sampled frames of one clip per class, a row per class.

    ``frames`` and ``size`` are the model's (its config). Frames are the exact model input, enlarged ``scale``
    times without smoothing.
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

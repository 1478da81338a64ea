"""Measured open-set behaviour of a model, stored as ``openset.json`` in its directory, and its dashboard figures.

The figures are computed by ``benchmarks/bench_openset.py --write`` (known test-group clips against the windows
of the shared wild videos, the leave-one-class-out table, calibration on the test groups) and only read here:
ROC curves of the familiarity score and of the top probability (the baseline), the rejection rates at the
operating point, and a reliability diagram with the expected calibration error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from har.openset.curves import auroc, roc
from har.openset.score import OPENSET_REPORT

__all__ = ["auroc", "calibration", "calibration_figure", "load_reports", "openset_caption", "openset_table",
           "others_roc_figure", "roc", "roc_figure"]

CALIBRATION_BINS = 10


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability of the top probability: per confidence bin, the mean confidence, the accuracy and the count;
    ``ece`` = the count-weighted mean gap between the two (expected calibration error)."""
    probs = np.asarray(probs, float)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows = {"lower": [], "confidence": [], "accuracy": [], "count": []}
    ece = 0.0
    for b in range(bins):
        hit = which == b
        if not hit.any():
            continue
        rows["lower"].append(round(float(edges[b]), 2))
        rows["confidence"].append(round(float(conf[hit].mean()), 4))
        rows["accuracy"].append(round(float(right[hit].mean()), 4))
        rows["count"].append(int(hit.sum()))
        ece += hit.mean() * abs(conf[hit].mean() - right[hit].mean())
    return {**rows, "ece": round(float(ece), 4), "clips": len(conf)}


def load_reports(names: Sequence[str], root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``openset.json`` of each model directory that has a readable one."""
    out = {}
    for name in names:
        path = Path(root) / name / OPENSET_REPORT
        try:
            out[name] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=320, xaxis_visible=False, yaxis_visible=False)
    return fig


def _on_diagonal(fig: go.Figure, x_title: str, y_title: str, diagonal: str | None) -> go.Figure:
    """``fig`` on the unit square with its diagonal (chance, or perfect calibration: named ``diagonal``)."""
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"color": "#bbb", "dash": "dash"},
                             name=diagonal or "", showlegend=diagonal is not None))
    fig.update_layout(height=380, xaxis_title=x_title, yaxis_title=y_title, legend={"orientation": "h", "y": -0.25},
                      margin={"t": 20})
    return fig


def roc_figure(reports: Mapping[str, Mapping[str, Any]], display: Mapping[str, str],
               colors: Mapping[str, str]) -> go.Figure:
    """Known test-group clips against the wild videos' windows: familiarity (solid) and top probability (dotted)."""
    if not reports:
        return _empty("No open-set results are stored for these models.")
    fig = go.Figure()
    for name, rep in reports.items():
        wild = rep["wild"]
        for key, dash, what in (("roc", "solid", "familiarity"), ("roc_top", "dot", "top probability")):
            if key in wild:
                area = wild["auroc" if key == "roc" else "auroc_top"]
                fig.add_trace(go.Scatter(x=wild[key]["fpr"], y=wild[key]["tpr"], mode="lines",
                                         line={"color": colors.get(name), "dash": dash},
                                         name=f"{display.get(name, name)}, {what} (AUROC {area:.2f})"))
        op = rep["operating_point"]
        fig.add_trace(go.Scatter(x=[op["known_rejected"]], y=[op["wild_windows_flagged"]], mode="markers",
                                 marker={"color": colors.get(name), "size": 10, "symbol": "x"},
                                 name=f"{display.get(name, name)}: operating point"))
    return _on_diagonal(fig, "known test clips flagged", "wild-video windows flagged", None)


def others_roc_figure(reports: Mapping[str, Mapping[str, Any]], display: Mapping[str, str],
                      colors: Mapping[str, str]) -> go.Figure:
    """Known clips against clips of other actions the score never learned from (leave-other-class-out on the
    non-test groups, each class scored by gates fitted without it): the familiarity's ROC, and each model's
    operating point (the share of known clips it turns away, the share of such clips it flags)."""
    reports = {n: r for n, r in reports.items() if r.get("other_actions", {}).get("roc")}
    if not reports:
        return _empty("No results on clips of other actions are stored for these models.")
    fig = go.Figure()
    for name, rep in reports.items():
        others = rep["other_actions"]
        fig.add_trace(go.Scatter(x=others["roc"]["fpr"], y=others["roc"]["tpr"], mode="lines",
                                 line={"color": colors.get(name)},
                                 name=f"{display.get(name, name)} (AUROC {others['mean']['auroc']:.2f})"))
        fig.add_trace(go.Scatter(x=[others["mean"]["known_rejected"]], y=[others["mean"]["flagged"]],
                                 mode="markers", marker={"color": colors.get(name), "size": 10, "symbol": "x"},
                                 name=f"{display.get(name, name)}: at its threshold"))
    return _on_diagonal(fig, "known clips turned away", "clips of unseen other actions flagged", None)


def calibration_figure(reports: Mapping[str, Mapping[str, Any]], display: Mapping[str, str],
                       colors: Mapping[str, str]) -> go.Figure:
    if not reports:
        return _empty("No calibration is stored for these models.")
    fig = go.Figure()
    for name, rep in reports.items():
        cal = rep["calibration"]
        fig.add_trace(go.Scatter(x=cal["confidence"], y=cal["accuracy"], mode="lines+markers",
                                 line={"color": colors.get(name)}, text=[f"{c} clips" for c in cal["count"]],
                                 name=f"{display.get(name, name)} (ECE {cal['ece']:.3f})"))
    return _on_diagonal(fig, "top probability (bin mean)", "accuracy in the bin", "perfect calibration")


def openset_caption(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """The label of :func:`openset_table`: what was measured, with the number of wild videos stored."""
    videos = {len(rep["wild"]["videos"]) for rep in reports.values()
              if isinstance(rep.get("wild", {}).get("videos"), list)}
    wild = f"{videos.pop()} web videos of other actions" if len(videos) == 1 else "web videos of other actions"
    counts = {len(rep.get("other_actions", {}).get("classes", [])) for rep in reports.values()} - {0}
    others = (f"clips of actions the score never learned from (each of the {counts.pop()} other actions left out in "
              "turn)" if len(counts) == 1 else "clips of actions the score never learned from")
    return (f"At the shipped threshold: known test-group clips turned away, {others} and seconds of {wild} flagged "
            "as none of the known actions, and how well each is told apart from known clips (AUROC: 1 is perfect, "
            "0.5 is chance)")


def openset_table(reports: Mapping[str, Mapping[str, Any]], display: Mapping[str, str]) -> pd.DataFrame:
    """One row per model, in a visitor's words: the rates at the shipped threshold, the leave-other-class-out means
    (clips of an action the score never learned from: flagged, told apart) and how well the familiarity tells the
    wild videos' windows from known clips."""
    rows = []
    for name, rep in reports.items():
        op, others = rep["operating_point"], rep.get("other_actions", {}).get("mean", {})
        rows.append({
            "model": display.get(name, name),
            "score": rep.get("method", {}).get("method", "not recorded"),
            "known test clips rejected": f"{op['known_rejected']:.1%}",
            "unseen other actions flagged": f"{others['flagged']:.0%}" if others else "not measured",
            "unseen other actions told apart (AUROC)": f"{others['auroc']:.2f}" if others else "not measured",
            "seconds of web videos flagged": f"{op['wild_seconds_flagged']:.0%}",
            "test accuracy (rejected = wrong)": f"{op['accuracy_with_rejection']:.1%} "
                                                f"(without open set {op['accuracy']:.1%})",
            "web-video windows told apart (AUROC)": f"{rep['wild']['auroc']:.2f} (top probability "
                                                    f"{rep['wild'].get('auroc_top', float('nan')):.2f})",
        })
    return pd.DataFrame(rows)

"""The Recognize tab's result drawn: class probabilities over time with the segments shaded, and the segments
as a table, from ``Analysis.to_dict()`` results (model label -> dict)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from har.reports.style import UNKNOWN_COLOR, class_colors, empty_figure
from har.serve.results import UNCERTAIN


def timeline_figure(results: Mapping[str, Mapping[str, Any]], uncertain_below: float | None = None) -> go.Figure:
    """Class probabilities over time, one panel per model, the recognized segments shaded and labelled.

    ``results``: model label -> ``Analysis.to_dict()`` (``per_step`` = {"t", "classes", "probs" (t, classes)} of
    ``step_s``, or ``per_second``, ``segments`` = [{start_s, end_s, label, score}]). Stretches of *none of the
    known actions* are shaded grey.
    """
    have = {k: v for k, v in results.items() if (v.get("per_step") or v.get("per_second") or {}).get("t")}
    if not have:
        return empty_figure("No timeline: the video is shorter than one window.", height=260)
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

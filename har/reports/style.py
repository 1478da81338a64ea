"""The figures' shared look: one colour per model and per class, and the figure that says nothing is there."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

MODEL_COLORS = {"lrcn": "#1f77b4", "convlstm": "#ff7f0e"}  # one colour per architecture in every figure
UNKNOWN_COLOR = "#8c8c8c"  # stretches of none of the known actions
CLASS_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac")


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    return {c: CLASS_COLORS[i % len(CLASS_COLORS)] for i, c in enumerate(classes)}


def empty_figure(message: str, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 15})
    fig.update_layout(height=height, xaxis={"visible": False}, yaxis={"visible": False}, template="plotly_white")
    return fig

"""Learning from few examples, from each model directory's ``fewshot.json`` (benchmarks/bench_teach.py): the
accuracy on new actions against the number of examples, and what the base classes lose."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from har.reports.style import empty_figure

FEWSHOT_FILE = "fewshot.json"


def load_results(directories: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """``{model name: fewshot.json's content}`` of the directories that hold a readable one."""
    out = {}
    for d in directories:
        try:
            out[Path(d).name] = json.loads((Path(d) / FEWSHOT_FILE).read_text())
        except (OSError, ValueError):
            continue
    return out


def fewshot_figure(results: Mapping[str, dict], display: Mapping[str, str], colors: Mapping[str, str]) -> go.Figure:
    """Left: new actions' accuracy (other actions, band from the lowest to the highest draw; dotted: base classes
    left out and taught back, their mean) against the examples per action. Right: the base classes' loss."""
    if not results:
        return empty_figure("No few-example results stored (python benchmarks/bench_teach.py --write).")
    fig = make_subplots(1, 2, subplot_titles=("New actions: accuracy on groups never shown",
                                              "Base classes: points lost against the base model"))
    for name, r in results.items():
        label, color = display.get(name, name), colors.get(name, "#444")
        rows = r["other_actions"]["rows"]
        x = [str(row["examples"]) for row in rows]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=[row["new_highest"] for row in rows] +
                                 [row["new_lowest"] for row in rows][::-1], fill="toself", line={"width": 0},
                                 fillcolor=color, opacity=0.15, showlegend=False, hoverinfo="skip"), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=[row["new_accuracy"] for row in rows], mode="lines+markers",
                                 name=f"{label}: other actions", line={"color": color}), 1, 1)
        back = r.get("left_out") or {}
        if back:
            shots = [str(row["examples"]) for row in next(iter(back.values()))]
            mean = np.mean([[row["accuracy"] for row in rows_] for rows_ in back.values()], axis=0)
            fig.add_trace(go.Scatter(x=shots, y=mean, mode="lines+markers", name=f"{label}: a base class taught "
                                     "back (mean of 6)", line={"color": color, "dash": "dot"}), 1, 1)
        fig.add_trace(go.Bar(x=x, y=[row["base_loss_points"] for row in rows], name=f"{label}: base classes lose",
                             marker_color=color, showlegend=False), 1, 2)
    fig.update_xaxes(title_text="examples per action", type="category")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="points", row=1, col=2)
    fig.update_layout(height=380, template="plotly_white", barmode="group", legend={"orientation": "h", "y": -0.25})
    return fig


def fewshot_caption(results: Mapping[str, dict]) -> str:
    """What the figure measures, from the stored protocol."""
    if not results:
        return "Learning from few examples"
    r = next(iter(results.values()))
    o = r["other_actions"]
    return (f"Learning from few examples: {len(o['groups'])} other actions ({o['data']}) taught at once to each "
            f"model from n clips of some groups, scored {o['ways']}-way on {o['scored_clips']} clips of other "
            f"groups and on {o['base_test_clips']} test clips of the base classes (docs/teach.md)")

"""The About tab: the model card (data, protocol, classes, limits, retraining, deployment), from the stored models."""

from __future__ import annotations

import gradio as gr

from har.reports import dashboard, modelcard
from ui.shared import example_clips


def about_tab(records: list[dashboard.ModelRecord]) -> None:
    before, after = modelcard.sections(records, list(example_clips()))
    gr.Markdown(before)
    ref = modelcard.reference(records)
    if ref is not None:
        gr.Dataframe(dashboard.split_table(ref), interactive=False, label=f"{ref.label}: groups per split",
                     elem_id="split")
    gr.Markdown(after)

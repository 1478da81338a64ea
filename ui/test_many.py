"""The Test many tab: several links and uploads with one model; the table fills in as results arrive, then the
summary (accuracy against the labels given) and a CSV of every row. The batch runs through :mod:`har.batch`,
each recognition taking its turn with single requests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import gradio as gr

from har import HarError
from har.batch.report import TABLE_HEADERS, summary_markdown, table_row, write_summary
from har.media.video import VIDEO_EXTENSIONS
from har.serve.turns import Turns
from har.settings import settings
from ui.payloads import checked_files
from ui.serving import output_dir
from ui.shared import MODEL_INFO, MODELS, chosen, docs_link, error
from ui.teach import offered

BATCH_TOP_K = 3  # classes listed per video in the table


def test_many(recognizers: dict, missing: dict, links: str, files: list[str] | None, model: str,
              turn=nullcontext, taught: dict | None = None) -> Iterator[tuple]:
    """Test several links and uploads with one model, yielding the tab's outputs (table, summary, CSV file) after
    every video: the table fills in as results arrive. Each recognition takes a ``turn()``. ``taught``: this
    visitor's taught models, ``{choice: Recognizer}`` (ui.teach)."""
    import pandas as pd

    from har.batch.items import pasted_items
    from har.batch.results import Results, manifest
    from har.batch.runner import run
    from har.links.fetch import FetchLimits

    rec = chosen(model, {**recognizers, **(taught or {})}, missing, [*MODELS, *(taught or {})])[model]
    try:  # (Gradio refuses uploads that are not video files: file_types)
        items = pasted_items(links or "", [Path(f) for f in files or []])
    except HarError as exc:
        raise error(str(exc)) from exc
    if not items:
        raise error("Paste links (one per line) or upload video files first.")
    most = settings().max_batch
    if len(items) > most:
        raise error(f"{len(items)} videos given; this server tests at most {most} at once (HAR_MAX_BATCH). "
                    "Split the list.")
    out = output_dir()
    try:
        limits = FetchLimits.from_env()
        results = Results(out, manifest(items, rec.name, BATCH_TOP_K))
    except HarError as exc:
        raise error(str(exc)) from exc
    table = [[i.n, i.input if i.link else Path(i.input).name, i.expected or "", "waiting…", "", "", "", "", ""]
             for i in items]

    def frame():
        return pd.DataFrame(table, columns=TABLE_HEADERS)

    yield frame(), f"Testing {len(items)} video{'s' if len(items) > 1 else ''} with {model}…", None
    for row in run(items, rec, top_k=BATCH_TOP_K, limits=limits, turn=turn):
        if not items[row["n"] - 1].link:
            row["input"] = Path(row["input"]).name  # not the server's path
        results.add(row)
        table[row["n"] - 1] = table_row(row)
        yield frame(), f"{len(results.rows)} of {len(items)} done…", None
    summary = write_summary(out, results.sorted(), rec.config.classes)
    yield frame(), summary_markdown(summary), str(results.csv)


def test_many_tab(recognizers: dict, missing: dict, turns: Turns) -> gr.Radio:
    """The tab; returns its model choice (the Teach tab adds a visitor's taught model to it)."""
    most = settings().max_batch
    gr.Markdown(f"Test up to {most} videos at once: paste links, one per line, each optionally followed by a comma "
                "and the action it shows (`https://youtu.be/…, Surfing`), and/or upload video files (a line "
                "`file-name.mp4, Label` gives an upload its label). Results fill the table as they arrive; at the "
                "end, the accuracy against the labels given and a CSV of every row. To test hundreds of videos on "
                f"your own machine, see {docs_link('batch.md', 'testing many videos')}.")
    with gr.Row():
        with gr.Column(scale=5):
            links = gr.Textbox("", label="Links, one per line, optionally followed by “, Label”", lines=6,
                               max_lines=40, elem_id="batch-links",
                               placeholder="https://www.youtube.com/watch?v=…, Surfing")
            files = checked_files(gr.File(label="…and/or video files", file_count="multiple",
                                          file_types=list(VIDEO_EXTENSIONS), elem_id="batch-files"), "files")
            model = gr.Radio(list(MODELS), value="LRCN", label="Model", info=MODEL_INFO, elem_id="batch-model")
            run = gr.Button("Test all", variant="primary", elem_id="batch-run")
        with gr.Column(scale=6):
            summary = gr.Markdown(elem_id="batch-summary")
            csv_file = gr.File(label="Every row (CSV)", interactive=False, elem_id="batch-csv")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Results", interactive=False, wrap=True, elem_id="batch-table",
                         column_widths=["4%", "20%", "10%", "12%", "7%", "5%", "8%", "6%", "28%"])

    # request: Gradio hands in the visitor's session, whose taught models (ui.teach) this visitor may choose
    def run_batch(links="", files=None, model="LRCN", request: gr.Request = None):
        yield from test_many(recognizers, missing, links, files, model, turns, offered(request))

    # One batch at a time (concurrency_limit=1) in a group of its own: its items take turns with single requests.
    run.click(run_batch, inputs=[links, files, model], outputs=[table, summary, csv_file],
              api_name="test_many", concurrency_id="batch", concurrency_limit=1)
    return model

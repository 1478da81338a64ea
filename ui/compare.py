"""The Compare models tab: the stored results of every model (training curves, test metrics, timelines, the open
set, what the model sees), read from the files of the model directories; nothing is trained or evaluated here."""

from __future__ import annotations

import gradio as gr

from har.openset import report as openset_report
from har.reports import dashboard, fewshot
from ui.shared import docs_link, example_clips


def compare_tab(records: list[dashboard.ModelRecord]) -> None:
    main = [r for r in records if r.name in dashboard.MAIN]
    gr.Markdown("Everything here is read from the files stored with each model (training history, "
                "test metrics, configuration, benchmark): nothing is trained or evaluated when you open this page. "
                "Test numbers are on UCF101 groups the models never saw in training or model selection.")
    notice = dashboard.notice(records)
    if notice:
        gr.Markdown(notice, elem_id="compare-notice")
    gr.Dataframe(dashboard.summary_table(records), label="Summary (from scratch: the same architectures without "
                 "the ImageNet encoder; tutorial: the original write-ups' networks; all trained and tested on the "
                 "same split)", interactive=False, elem_id="summary")
    gr.Plot(dashboard.curves_figure(main), label="Training curves (solid: train, dashed: validation"
            + (", dotted: the shipped refit on train + validation groups)" if dashboard.refit_shipped(records)
               else ")"), elem_id="curves")
    gr.Plot(dashboard.per_class_figure(main), label="Per class, on the test groups", elem_id="per-class")
    timelines = dashboard.timeline_table(main)
    if len(timelines):
        gr.Dataframe(timelines, interactive=False, elem_id="timeline-scores",
                     label=dashboard.timeline_caption(main))
    gr.Plot(dashboard.confusion_figure(main), label="Confusion matrices (rows: true class)", elem_id="confusion")
    _openset_section(main)
    learned = fewshot.load_results([r.directory for r in main])  # benchmarks/bench_teach.py --write
    if learned:
        gr.Plot(fewshot.fewshot_figure(learned, dashboard.DISPLAY, dashboard.MODEL_COLORS), elem_id="fewshot",
                label=fewshot.fewshot_caption(learned))
    clips = example_clips()
    if clips:
        cfg = next((r.config for r in main if r.config), None)
        frames, size = (cfg.frames, cfg.size) if cfg else (20, 64)
        gr.Image(dashboard.frame_strip(clips, frames=frames, size=size), format="jpeg", interactive=False,
                 label=f"What the model sees: 8 of the {frames} frames sampled from one clip per class, at "
                       f"{size}x{size} pixels", elem_id="frames")
    for r in main:  # stored by `python -m har explain --model NAME`
        if r.explained is not None:
            gr.Image(str(r.explained), format="jpeg", interactive=False, elem_id=f"explained-{r.name}",
                     label=f"Why {r.label} answers as it does, on one example clip per class: where it looked "
                           "(Grad-CAM, red is hot) and, under each frame, how much its answer drops without it")


def _openset_section(main: list[dashboard.ModelRecord]) -> None:
    """Open set, from each model's openset.json."""
    reports = {r.name: rep for r in main
               for rep in openset_report.load_reports([r.name], r.directory.parent).values()}
    known = next((len(r.config.classes) for r in main if r.config), None)
    actions = f"the {known} actions" if known else "the known actions"
    learned = next((r.get("other_actions", {}).get("classes") for r in reports.values()
                    if r.get("other_actions", {}).get("classes")), None)
    taught = (f" and how unlike it is to clips of {len(learned)} other actions ({', '.join(learned)}) the score "
              "learned from" if learned else "")
    gr.Markdown(f"### None of {actions}: the open-set score\nEach answer carries a *familiarity*: the model's "
                f"own evidence for its classes, how much the video looks like the training clips{taught}; 0 for a "
                f"typical known clip the model never saw ({docs_link('openset.md', 'how it is measured')}). Under "
                f"the threshold set on such held-out clips, the app says the video shows none of {actions}.",
                elem_id="openset-intro")
    if reports:
        gr.Dataframe(openset_report.openset_table(reports, dashboard.DISPLAY), interactive=False,
                     elem_id="openset-table", label=openset_report.openset_caption(reports))
    gr.Plot(openset_report.others_roc_figure(reports, dashboard.DISPLAY, dashboard.MODEL_COLORS),
            elem_id="openset-others-roc",
            label="Known clips against clips of other actions the score never learned from (each left out in turn): "
                  "ROC of the familiarity")
    gr.Plot(openset_report.roc_figure(reports, dashboard.DISPLAY, dashboard.MODEL_COLORS), elem_id="openset-roc",
            label="Known test clips against windows of the wild videos: ROC of familiarity and of the top probability")
    gr.Plot(openset_report.calibration_figure(reports, dashboard.DISPLAY, dashboard.MODEL_COLORS),
            elem_id="calibration", label="Calibration of the top probability on the test groups (reliability)")

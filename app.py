"""HAR Studio, the Gradio app: Recognize, Test many, Compare models, About. A thin UI over the ``har`` library.

    python app.py    # serves on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT (default 127.0.0.1:7860), or on $PORT

The models load once at start-up, warmed up, and every request shares them (``har.Recognizer`` is
thread-safe). Handlers call ``har`` and turn its :class:`HarError` into ``gr.Error`` with the library's message;
anything else is a bug, logged here and shown to a visitor as a bare "Error", never as a traceback.

Serving knobs (environment): ``HAR_MODELS_DIR`` (the model directories, default ``models/``), ``HAR_CONCURRENCY``
(recognitions at once, default half the CPUs), ``HAR_QUEUE_SIZE`` (waiting requests, default 16),
``HAR_MAX_UPLOAD_MB`` (default 200), ``HAR_MAX_BATCH`` (videos per Test many request, default 10),
``HAR_MAX_CACHE_MB`` (Gradio's cache of uploads and outputs, default 2000: ``har.serve.cache``); downloads obey
``HAR_ALLOWED_HOSTS`` and the limits of ``har.links.fetch``. Single requests and each item of a batch take turns
(``har.serve.turns``) at the recognizers, so a batch holds up another visitor for one item at most.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import gradio as gr
import gradio.utils

from har import HarError, __version__
from har.media.video import VIDEO_EXTENSIONS
from har.openset import report as openset_report
from har.progress import scaled
from har.reports import dashboard, modelcard
from har.serve.cache import max_cache_bytes, sweep
from har.serve.turns import Turns

log = logging.getLogger("har.app")

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
MODELS = {"LRCN": "lrcn", "ConvLSTM": "convlstm"}  # choice shown -> model directory name
BOTH = "Both, side by side"
CHOICES = [*MODELS, BOTH]
TOP_K = 6
BATCH_TOP_K = 3  # classes listed per video in the Test many table
DEFAULT_MAX_BATCH = 10  # videos per Test many request (HAR_MAX_BATCH)


# ---- start-up -----------------------------------------------------------------------------------------------------

def check_models() -> dict[str, str]:
    """``{choice: why it is unavailable}`` for model directories that are missing or incomplete (no loading)."""
    from har.modeldir import resolve_model_dir

    missing = {}
    for choice, name in MODELS.items():
        try:
            resolve_model_dir(name)
        except HarError as exc:
            missing[choice] = str(exc)
    return missing


def load_recognizers(into: dict, missing: dict) -> None:
    """Load and warm up every available model into ``into`` (``{choice: Recognizer}``); a model that fails to load
    joins ``missing`` with the reason. A missing model does not stop the app: choosing it gives that reason."""
    from har import Recognizer

    for choice, name in MODELS.items():
        if choice in missing:
            log.warning("%s is unavailable: %s", choice, missing[choice])
            continue
        t0 = time.perf_counter()
        try:
            # ONNX Runtime when the model's ONNX copy is current and no GPU is present (HAR_RUNTIME overrides):
            # the ImageNet LRCN's clip took 4.3 ms there, 12.5 ms in TensorFlow (bench_models, 2-core CPU).
            into[choice] = Recognizer(name, runtime="auto")
            log.info("%s loaded and warmed up in %.1f s (%s)", choice, time.perf_counter() - t0,
                     into[choice].runtime)
        except HarError as exc:
            missing[choice] = str(exc)
            log.warning("%s is unavailable: %s", choice, exc)


def example_clips() -> dict[str, Path]:
    """One shipped clip per class, ``examples/v_<Class>_gGG_cCC.mp4`` -> ``{Class: path}``."""
    return {p.stem.split("_")[1]: p for p in sorted(EXAMPLES.glob("v_*.mp4"))}


# ---- the Recognize handler ----------------------------------------------------------------------------------------

def _output_dir() -> Path:
    """A fresh directory for one request's outputs inside Gradio's cache: Gradio serves them from there without a
    copy and deletes them with the rest of its cache (``delete_cache``). Empty leftovers of earlier requests go
    (the cache sweep removes files, not their folders); only old ones: a young empty folder may be another request's,
    just created and not written yet."""
    cache = Path(gradio.utils.get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    sweep(cache, max_cache_bytes())  # the size cap (the age sweep is Gradio's)
    for old in cache.glob("har-*"):
        try:
            if old.is_dir() and time.time() - old.stat().st_mtime > 600 and not any(old.iterdir()):
                old.rmdir()  # fails harmlessly if a file appeared meanwhile
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="har-", dir=cache))


def _chosen(model: str, recognizers: dict, missing: dict) -> dict:
    if model not in CHOICES:
        raise gr.Error(f"Unknown model '{model}': choose one of {', '.join(CHOICES)}.", print_exception=False)
    wanted = list(MODELS) if model == BOTH else [model]
    absent = [c for c in wanted if c not in recognizers]  # missing, or failed to load
    if absent:
        raise gr.Error(" ".join(f"The {c} model is not available on this server: {missing.get(c, '')}"
                                for c in absent), print_exception=False)
    return {c: recognizers[c] for c in wanted}


def _uncertain_notice(results: dict[str, dict]) -> str:
    lines = [f"**{name} read only part of the video**: {r['read_warning']}"
             for name, r in results.items() if r.get("read_warning")]
    strange = {name: r for name, r in results.items() if _unfamiliar(r)}
    if strange:
        lines.append("**This video doesn't look like any of the six actions the models know.** " + " ".join(
            f"{name}: familiarity {r['familiarity']:.2f}, under its threshold of {r['familiar_above']:.2f} "
            f"(closest action: {r['top'][0]['label']})." for name, r in strange.items()))
    lines += [
        f"**{name} is not sure**: its best guess, {r['top'][0]['label']}, has probability "
        f"{r['top'][0]['score']:.0%}, under its threshold of {r['uncertain_below']:.0%}. The video may show none of "
        "the six actions it knows."
        for name, r in results.items() if r["uncertain"] and name not in strange
    ]
    return "\n\n".join(lines)


def _unfamiliar(result: dict) -> bool:
    """True when a model's open-set score puts the whole video outside what it was trained on."""
    return result.get("familiarity") is not None and result["familiarity"] < result["familiar_above"]


def recognize(recognizers: dict, missing: dict, video: str | None, url: str, model: str,
              start_s: float | None, end_s: float | None, progress, explain: bool = False,
              turn=nullcontext) -> tuple:
    """Analyse an uploaded/recorded video or a link with one model or both. Returns the Recognize tab's outputs:
    (first label, second label, annotated video, timeline figure, segments table, notice, JSON file, explanation
    strip, explanation in words); with ``explain`` off, the last two are empty. ``turn()``: held around the
    recognition (after any download), shared with the batches."""
    from har import analyze, annotate, fetched

    url = (url or "").strip()
    if not video and not url:
        raise gr.Error("Upload or record a video, or paste a link, first.", print_exception=False)
    if video and url:
        raise gr.Error("Give a video or a link, not both: clear one of them.", print_exception=False)
    recs = _chosen(model, recognizers, missing)
    if video and Path(video).suffix.lower() not in VIDEO_EXTENSIONS:
        raise gr.Error(f"Only video files can be analysed ({', '.join(VIDEO_EXTENSIONS)}); "
                       f"'{Path(video).name}' is not one.", print_exception=False)
    names = {r.name: choice for choice, r in recs.items()}  # "lrcn" -> "LRCN"
    out = _output_dir()

    def step(a: float, b: float):
        # har's progress(fraction in [0, 1] or None, message) -> the share [a, b] of one gr.Progress bar
        return scaled(lambda f, msg: progress(f, desc=msg), a, b)

    t0 = time.perf_counter()
    try:
        # A link is downloaded into a temporary directory that goes when the block ends, whatever happens.
        local = fetched(url, start_s=start_s or None, end_s=end_s or None, progress=step(0.0, 0.3)) if url \
            else nullcontext(Path(video))
        with local as path, turn():
            begin = 0.3 if url else 0.0
            half = begin + (1 - begin) / 2
            analyses = analyze(path, list(recs.values()), top_k=TOP_K, progress=step(begin, half))
            # the copy is drawn here rather than by analyze(), to caption each line with the name a visitor chose
            annotated = annotate(path, out / f"{path.stem}-annotated.mp4",
                                 {names[n]: x.timeline or x.clip for n, x in analyses.items()},
                                 progress=step(half, 0.85 if explain else 1.0))
            strip, words = _explained(list(recs.values()), names, path, out, step(0.85, 1.0)) if explain \
                else (None, "")
            source = path.name
    except HarError as exc:
        shutil.rmtree(out, ignore_errors=True)
        raise gr.Error(str(exc), print_exception=False) from exc
    except Exception:
        shutil.rmtree(out, ignore_errors=True)
        log.exception("recognize failed on %s", url or video)
        raise

    results = {}
    for name, analysis in analyses.items():
        d = analysis.to_dict()
        d.pop("annotated", None)  # a server path: meaningless to the visitor
        d["input"] = source
        d["read_warning"] = analysis.clip.read_warning()
        results[names[name]] = d
    labels = [{s["label"]: s["score"] for s in r["top"]} for r in results.values()]
    result_file = out / f"{Path(source).stem}-har.json"
    result_file.write_text(json.dumps({
        "source": url or source, "start_s": start_s if url else None, "end_s": end_s if url else None,
        "seconds": round(time.perf_counter() - t0, 2), "har_studio": __version__, "models": results,
    }, indent=1))
    threshold = min(r["uncertain_below"] for r in results.values())
    return (labels[0], labels[1] if len(labels) > 1 else None, str(annotated),
            dashboard.timeline_figure(results, threshold), dashboard.segments_table(results),
            _uncertain_notice(results), str(result_file), strip, words)


def _explained(recs: list, names: dict, path: Path, out: Path, progress) -> tuple[str, str]:
    """Each chosen model's reasons on the clip (frames by occlusion, regions by Grad-CAM): one strip image, one line
    of words per model."""
    from har.evaluation.explain import explain_all, save_strip, strip

    found = explain_all(recs, path, progress=progress)  # one sampling pass for models that sample alike
    image = save_strip(strip(found, [names[r.name] for r in recs]), out / f"{path.stem}-explained.jpg")
    return str(image), "\n\n".join(e.summary(names[e.model]) for e in found)


# ---- the Test many handler ----------------------------------------------------------------------------------------

def test_many(recognizers: dict, missing: dict, links: str, files: list[str] | None, model: str,
              turn=nullcontext) -> Iterator[tuple]:
    """Test several links and uploads with one model, yielding the Test many tab's outputs (table, summary, CSV
    file) after every video: the table fills in as results arrive. Each recognition takes a ``turn()``."""
    import pandas as pd

    from har.batch.report import TABLE_HEADERS, summary_markdown, table_row, write_summary
    from har.batch.runner import Results, manifest, pasted_items, run
    from har.links.fetch import FetchLimits

    if model not in MODELS:
        raise gr.Error(f"Unknown model '{model}': choose one of {', '.join(MODELS)}.", print_exception=False)
    rec = _chosen(model, recognizers, missing)[model]
    try:  # (Gradio refuses uploads that are not video files: file_types)
        items = pasted_items(links or "", [Path(f) for f in files or []])
    except HarError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc
    if not items:
        raise gr.Error("Paste links (one per line) or upload video files first.", print_exception=False)
    most = _env_int("HAR_MAX_BATCH", DEFAULT_MAX_BATCH)
    if len(items) > most:
        raise gr.Error(f"{len(items)} videos given; this server tests at most {most} at once (HAR_MAX_BATCH). "
                       "Split the list.", print_exception=False)
    out = _output_dir()
    try:
        limits = FetchLimits.from_env()
        results = Results(out, manifest(items, rec.name, BATCH_TOP_K))
    except HarError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc
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


# ---- tabs ---------------------------------------------------------------------------------------------------------

def recognize_tab(recognizers: dict, missing: dict, turns: Turns) -> None:
    available = [c for c in MODELS if c not in missing]
    with gr.Row():
        with gr.Column(scale=5):
            video = gr.Video(label="Video: upload a file or record with the webcam", sources=["upload", "webcam"],
                             height=300, elem_id="video-in")
            url = gr.Textbox("", label="…or paste a link (YouTube or another site)", max_lines=1, elem_id="url",
                             placeholder="https://www.youtube.com/watch?v=…")
            with gr.Row():
                start_s = gr.Number(label="From second (links only; 0: the start)", value=None, minimum=0,
                                    elem_id="start")
                end_s = gr.Number(label="To second (links only; 0: the end)", value=None, minimum=0, elem_id="end")
            model = gr.Radio(CHOICES, value="LRCN", label="Model", elem_id="model")
            explain = gr.Checkbox(False, label="Explain: which frames and which parts of them each model relied on "
                                  "(a few seconds more)", elem_id="explain")
            run = gr.Button("Recognize", variant="primary", elem_id="recognize")
            examples = gr.Examples([[str(p)] for p in example_clips().values()], inputs=[video],
                                   example_labels=list(example_clips()), label="Examples: one click each",
                                   cache_examples=False, api_name="load_example")
            if missing:
                gr.Markdown("\n\n".join(f"⚠️ **{c} is not available**: {m}" for c, m in missing.items()))
        with gr.Column(scale=6):
            notice = gr.Markdown(label="Notice", elem_id="notice")
            with gr.Row():
                label_a = gr.Label(label="LRCN", num_top_classes=TOP_K, elem_id="label-a")
                label_b = gr.Label(label="ConvLSTM", num_top_classes=TOP_K, visible=False, elem_id="label-b")
            # No label badge: it would sit on the captions drawn at the top left of the annotated copy.
            annotated = gr.Video(label="Annotated copy (H.264 MP4)", show_label=False, interactive=False,
                                 elem_id="annotated")
    timeline = gr.Plot(label="Timeline: class probabilities over time, segments shaded (grey: none of the "
                       "known actions)", elem_id="timeline")
    with gr.Row():
        segments = gr.Dataframe(label="Segments", interactive=False, elem_id="segments", scale=3)
        result = gr.File(label="Full result (JSON)", interactive=False, elem_id="result-json", scale=1)
    explanation = gr.Image(label="Why: each sampled frame with where the model looked (Grad-CAM, red is hot) and, "
                           "below it, how much the answer drops without that frame (occlusion)", interactive=False,
                           format="jpeg", elem_id="explanation")
    explanation_words = gr.Markdown(elem_id="explanation-words")
    if not available:
        gr.Markdown("No model is loaded: recognition is unavailable. See *About* for how to train one.")

    # ---- events, wired last
    outputs = [label_a, label_b, annotated, timeline, segments, notice, result, explanation, explanation_words]
    # The parameter names are the API's keyword names; a gr.Progress() default is how Gradio hands in the bar.

    def run_recognize(video=None, url="", model="LRCN", start_s=None, end_s=None, explain=False,
                      progress=gr.Progress()):  # noqa: B008
        return recognize(recognizers, missing, video, url, model, start_s, end_s, progress, bool(explain), turns)

    def run_example(video=None, model="LRCN", explain=False, progress=gr.Progress()):  # noqa: B008
        return recognize(recognizers, missing, video, "", model, None, None, progress, bool(explain), turns)

    def show_model(model: str):
        both = model == BOTH
        return gr.Label(label="LRCN" if both else model), gr.Label(visible=both)

    run.click(run_recognize, inputs=[video, url, model, start_s, end_s, explain], outputs=outputs, api_name="recognize",
              concurrency_id="inference")
    url.submit(run_recognize, inputs=[video, url, model, start_s, end_s, explain], outputs=outputs,
               api_name="recognize_link", api_visibility="undocumented", concurrency_id="inference")
    examples.load_input_event.then(run_example, inputs=[video, model, explain], outputs=outputs,
                                   api_name="recognize_example", api_visibility="undocumented",
                                   concurrency_id="inference")
    model.change(show_model, inputs=[model], outputs=[label_a, label_b], api_name="show_model",
                 api_visibility="undocumented", queue=False)


def test_many_tab(recognizers: dict, missing: dict, turns: Turns) -> None:
    from har.batch.report import TABLE_HEADERS

    most = _env_int("HAR_MAX_BATCH", DEFAULT_MAX_BATCH)
    gr.Markdown(f"Test up to {most} videos at once: paste links, one per line, each optionally followed by a comma "
                "and the action it shows (`https://youtu.be/…, Surfing`), and/or upload video files (a line "
                "`file-name.mp4, Label` gives an upload its label). Results fill the table as they arrive; at the "
                "end, the accuracy against the labels given and a CSV of every row. How to test hundreds: "
                "`python -m har batch` (docs/batch.md).")
    with gr.Row():
        with gr.Column(scale=5):
            links = gr.Textbox("", label="Links, one per line, optionally followed by “, Label”", lines=6,
                               max_lines=40, elem_id="batch-links",
                               placeholder="https://www.youtube.com/watch?v=…, Surfing")
            files = gr.File(label="…and/or video files", file_count="multiple", file_types=list(VIDEO_EXTENSIONS),
                            elem_id="batch-files")
            model = gr.Radio(list(MODELS), value="LRCN", label="Model", elem_id="batch-model")
            run = gr.Button("Test all", variant="primary", elem_id="batch-run")
        with gr.Column(scale=6):
            summary = gr.Markdown(elem_id="batch-summary")
            csv_file = gr.File(label="Every row (CSV)", interactive=False, elem_id="batch-csv")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Results", interactive=False, wrap=True, elem_id="batch-table",
                         column_widths=["4%", "20%", "10%", "12%", "7%", "5%", "8%", "6%", "28%"])

    def run_batch(links="", files=None, model="LRCN"):
        yield from test_many(recognizers, missing, links, files, model, turns)

    # One batch at a time (concurrency_limit=1) in a group of its own: its items take turns with single requests.
    run.click(run_batch, inputs=[links, files, model], outputs=[table, summary, csv_file], api_name="test_many",
              concurrency_id="batch", concurrency_limit=1)


def compare_tab(records: list[dashboard.ModelRecord]) -> None:
    main = [r for r in records if r.name in dashboard.MAIN]
    gr.Markdown("Everything here is read from the files stored with each model in `models/` (training history, "
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
                     label="Timelines on montages of test-group clips (6 pieces of 2–10 s each, random classes; "
                           "benchmarks/bench_timeline.py): segments found and where they end; before: the smoothing "
                           "the decoder replaced")
    gr.Plot(dashboard.confusion_figure(main), label="Confusion matrices (rows: true class)", elem_id="confusion")
    _openset_section(main)
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
    """Open set, from each model's openset.json (benchmarks/bench_openset.py --write)."""
    reports = {r.name: rep for r in main
               for rep in openset_report.load_reports([r.name], r.directory.parent).values()}
    gr.Markdown("### None of the six actions: the open-set score\nEach answer carries a *familiarity*: the model's "
                "own evidence for its classes plus how much the video looks like the training clips, 0 for a typical "
                "known clip the model never saw (docs/openset.md). Under the threshold set on such held-out clips, "
                "the app says the video shows none of the six actions.", elem_id="openset-intro")
    if reports:
        gr.Dataframe(openset_report.openset_table(reports, dashboard.DISPLAY), interactive=False,
                     elem_id="openset-table", label="At the shipped threshold: known test-group clips rejected, "
                     "seconds of the three wild videos (other actions) flagged, leave-one-class-out AUROC")
    gr.Plot(openset_report.roc_figure(reports, dashboard.DISPLAY, dashboard.MODEL_COLORS), elem_id="openset-roc",
            label="Known test clips against windows of the wild videos: ROC of familiarity and of the top probability")
    gr.Plot(openset_report.calibration_figure(reports, dashboard.DISPLAY, dashboard.MODEL_COLORS),
            elem_id="calibration", label="Calibration of the top probability on the test groups (reliability)")


def about_tab(records: list[dashboard.ModelRecord]) -> None:
    before, after = modelcard.sections(records, list(example_clips()))
    gr.Markdown(before)
    ref = modelcard.reference(records)
    if ref is not None:
        gr.Dataframe(dashboard.split_table(ref), interactive=False, label=f"{ref.label}: groups per split",
                     elem_id="split")
    gr.Markdown(after)


def build_app(recognizers: dict, missing: dict, records: list[dashboard.ModelRecord],
              turns: Turns | None = None) -> gr.Blocks:
    """The page. ``turns``: the recognizers' fair turns (one at a time by default)."""
    turns = turns or Turns(1)
    # Gradio's cache (uploads, outputs) is swept every 15 min of files older than an hour, and emptied at exit;
    # har.serve.cache caps its size (HAR_MAX_CACHE_MB) at every request and every minute.
    with gr.Blocks(title="HAR Studio", delete_cache=(900, 3600)) as demo:
        gr.Markdown("# HAR Studio\nWhich of six UCF101 actions does a video show? Two architectures, LRCN and "
                    "ConvLSTM, trained and tested on separate groups of clips, compared in the open.")
        with gr.Tab("Recognize", id="recognize"):
            recognize_tab(recognizers, missing, turns)
        with gr.Tab("Test many", id="test-many"):
            test_many_tab(recognizers, missing, turns)
        with gr.Tab("Compare models", id="compare"):
            compare_tab(records)
        with gr.Tab("About", id="about"):
            about_tab(records)
    return demo


# ---- serving ------------------------------------------------------------------------------------------------------

def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"error: {name}={raw!r} is not a whole number of at least 1.")
    return value


def settings() -> dict[str, int]:
    """The serving numbers from the environment, and the limits of uploads and links, all checked before anything
    slow starts: a bad ``HAR_*`` value stops start-up with one line (``error: ...``, status 1), not at the first
    request."""
    from har.links.fetch import FetchLimits
    from har.media.limits import max_video_seconds

    try:
        max_video_seconds()
        FetchLimits.from_env()
        max_cache_bytes()
    except HarError as exc:
        raise SystemExit(f"error: {exc}") from None
    # TensorFlow already spreads one forward pass over the cores: a couple of requests at once is plenty.
    return {"concurrency": _env_int("HAR_CONCURRENCY", max(1, (os.cpu_count() or 2) // 2)),
            "queue_size": _env_int("HAR_QUEUE_SIZE", 16), "upload_mb": _env_int("HAR_MAX_UPLOAD_MB", 200),
            "max_batch": _env_int("HAR_MAX_BATCH", DEFAULT_MAX_BATCH)}


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _sweep_every(seconds: float) -> None:
    """Keep Gradio's cache under HAR_MAX_CACHE_MB between requests too (a burst of uploads comes before any)."""
    def loop() -> None:
        while True:
            time.sleep(seconds)
            try:
                sweep(gradio.utils.get_upload_folder(), max_cache_bytes())
            except (OSError, HarError) as exc:
                log.warning("cache sweep failed: %s", exc)

    threading.Thread(target=loop, name="cache-sweep", daemon=True).start()


def serve() -> None:
    knobs = settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    missing = check_models()
    recognizers: dict = {}
    concurrency = knobs["concurrency"]
    # TensorFlow's import and the models' warm-up (the slow part of start-up) overlap with building the page.
    with ThreadPoolExecutor(1, thread_name_prefix="load-models") as pool:
        loading = pool.submit(load_recognizers, recognizers, missing)
        # single requests and each video of a batch take turns at the recognizers, as many at once as the queue runs
        demo = build_app(recognizers, missing, dashboard.load_records(), Turns(concurrency))
        loading.result()
    _sweep_every(60)
    demo.queue(default_concurrency_limit=concurrency, max_size=knobs["queue_size"])
    port = os.environ.get("PORT", "").strip()  # platforms that route to $PORT (Deta Space, most PaaS)
    log.info("built in %.1f s; %d recognition(s) at once", time.perf_counter() - t0, concurrency)
    # Platforms and service managers stop a server with SIGTERM, which would end Python on the spot: shut down as on
    # Ctrl-C instead, so that Gradio empties its cache (uploads and outputs) on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if port else None),
        server_port=int(port) if port else None,  # None: $GRADIO_SERVER_PORT, else 7860
        max_file_size=f"{knobs['upload_mb']}mb",
        show_error=False,  # gr.Error messages still show; other exceptions stay in the log
        footer_links=["api"],
    )


if __name__ == "__main__":
    serve()

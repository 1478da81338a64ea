"""The Recognize tab: one video (an upload, the webcam or a link), one model or both side by side.

The handler calls ``har`` (download, analyse, annotate, explain) and :mod:`har.serve.summary` (the result file and
the notices); a :class:`HarError` becomes a ``gr.Error`` with the library's message. The results' components stay
hidden until a result fills them, and only those with something to show appear.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import gradio as gr

from har import HarError
from har.media.video import VIDEO_EXTENSIONS
from har.progress import scaled
from har.reports import dashboard
from har.serve import summary
from har.serve.turns import Turns
from har.settings import settings
from ui.payloads import checked_files, checked_seconds
from ui.serving import Downloads, inference_limit, output_dir
from ui.shared import BOTH, CHOICES, MODEL_INFO, MODELS, chosen, error, example_clips
from ui.teach import offered

log = logging.getLogger("har.app")

TOP_K = 6


def recognize(recognizers: dict, missing: dict, video: str | None, url: str, model: str,
              start_s: float | None, end_s: float | None, progress, explain: bool = False,
              turn=nullcontext, download=nullcontext, taught: dict | None = None) -> tuple:
    """Analyse an uploaded/recorded video or a link with one model or both. Returns the tab's outputs: (first
    label, second label, annotated video, timeline figure, segments table, notice, JSON file, explanation strip,
    explanation in words); with one model the second label is None, with ``explain`` off the last two are empty.
    ``turn()``: held around the recognition (after any download), shared with the batches; ``download()``: held
    around the download of a link (:class:`ui.serving.Downloads`), never with a turn. ``taught``: this visitor's
    taught models, ``{choice: Recognizer}`` (ui.teach)."""
    from har import analyze, annotate, fetched
    from har.links.fetch import check_url

    url = (url or "").strip()
    if not video and not url:
        raise error("Upload or record a video, or paste a link, first.")
    if video and url:
        raise error("Give a video or a link, not both: clear one of them.")
    recs = chosen(model, {**recognizers, **(taught or {})}, missing, [*CHOICES, *(taught or {})])
    if video and Path(video).suffix.lower() not in VIDEO_EXTENSIONS:
        raise error(f"Only video files can be analysed ({', '.join(VIDEO_EXTENSIONS)}); "
                    f"'{Path(video).name}' is not one.")
    names = {r.name: choice for choice, r in recs.items()}  # "lrcn" -> "LRCN"
    out = output_dir()

    def step(a: float, b: float):
        # har's progress(fraction in [0, 1] or None, message) -> the share [a, b] of one gr.Progress bar
        return scaled(lambda f, msg: progress(f, desc=msg), a, b)

    t0 = time.perf_counter()
    try:
        # A link is downloaded into a temporary directory that goes when the block ends, whatever happens; the
        # download holds a download slot only, and the recognition then waits for its turn like an upload.
        with ExitStack() as stack:
            if url:
                check_url(url)  # a link refused says why, even when every download slot is taken
                with download():
                    path = stack.enter_context(fetched(url, start_s=start_s or None, end_s=end_s or None,
                                                       progress=step(0.0, 0.3)))
            else:
                path = Path(video)
            stack.enter_context(turn())
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
        raise error(str(exc)) from exc
    except gr.Error:  # busy: our own message already
        shutil.rmtree(out, ignore_errors=True)
        raise
    except Exception:
        shutil.rmtree(out, ignore_errors=True)
        log.exception("recognize failed on %s", url or video)
        raise

    results = summary.model_results(analyses, names, source)
    result_file = out / f"{Path(source).stem}-har.json"
    result_file.write_text(json.dumps(summary.result_document(
        results, source=url or source, start_s=start_s if url else None, end_s=end_s if url else None,
        seconds=time.perf_counter() - t0), indent=1))
    labels = [summary.label_scores(r) for r in results.values()]
    threshold = min(r["uncertain_below"] for r in results.values())  # where the timeline draws "not sure"
    return (labels[0], labels[1] if len(labels) > 1 else None, str(annotated),
            dashboard.timeline_figure(results, threshold), dashboard.segments_table(results),
            summary.notice(results), str(result_file), strip, words)


def reveal(model: str, explain: bool) -> tuple:
    """After a result: show the result components that it filled (the second label with both models, the
    explanation when asked for) and hide the others. An event of its own, so that the API's answer stays plain
    values."""
    return (gr.update(visible=True, label="LRCN" if model == BOTH else model), gr.update(visible=model == BOTH),
            *[gr.update(visible=True)] * 4, gr.update(visible=bool(explain)), gr.update(visible=bool(explain)))


def _explained(recs: list, names: dict, path: Path, out: Path, progress) -> tuple[str, str]:
    """Each chosen model's reasons on the clip (frames by occlusion, regions by Grad-CAM): one strip image, one line
    of words per model."""
    from har.evaluation.explain import explain_all, save_strip, strip

    found = explain_all(recs, path, progress=progress)  # one sampling pass for models that sample alike
    image = save_strip(strip(found, [names[r.name] for r in recs]), out / f"{path.stem}-explained.jpg")
    return str(image), "\n\n".join(e.summary(names[e.model]) for e in found)


def recognize_tab(recognizers: dict, missing: dict, turns: Turns) -> gr.Radio:
    """The tab; returns its model choice (the Teach tab adds a visitor's taught model to it)."""
    available = [c for c in MODELS if c not in missing]
    clips = example_clips()
    with gr.Row():
        with gr.Column(scale=5):
            video = checked_files(gr.Video(label="Video: upload a file or record with the webcam",
                                           sources=["upload", "webcam"], height=300, elem_id="video-in"), "video")
            url = gr.Textbox("", label="…or paste a link (YouTube or another site)", max_lines=1, elem_id="url",
                             placeholder="https://www.youtube.com/watch?v=…")
            with gr.Row():
                start_s = checked_seconds(gr.Number(label="From second (links only; 0: the start)", value=None,
                                                    minimum=0, elem_id="start"))
                end_s = checked_seconds(gr.Number(label="To second (links only; 0: the end)", value=None, minimum=0,
                                                  elem_id="end"))
            model = gr.Radio(CHOICES, value="LRCN", label="Model", info=MODEL_INFO, elem_id="model")
            explain = gr.Checkbox(False, label="Explain: which frames and which parts of them each model relied on "
                                  "(a few seconds more)", elem_id="explain")
            run = gr.Button("Recognize", variant="primary", elem_id="recognize")
            examples = gr.Examples([[str(p)] for p in clips.values()], inputs=[video], example_labels=list(clips),
                                   label="Examples: one click each", cache_examples=False, api_name="load_example")
            if missing:
                gr.Markdown("\n\n".join(f"⚠️ **{c} is not available**: {m}" for c, m in missing.items()))
        with gr.Column(scale=6):
            notice = gr.Markdown(label="Notice", elem_id="notice")
            with gr.Row():
                label_a = gr.Label(label="LRCN", num_top_classes=TOP_K, visible=False, elem_id="label-a")
                label_b = gr.Label(label="ConvLSTM", num_top_classes=TOP_K, visible=False, elem_id="label-b")
            # No label badge: it would sit on the captions drawn at the top left of the annotated copy.
            annotated = gr.Video(label="Annotated copy (H.264 MP4)", show_label=False, interactive=False,
                                 visible=False, elem_id="annotated")
    timeline = gr.Plot(label="Timeline: class probabilities over time, segments shaded (grey: none of the "
                       "known actions)", visible=False, elem_id="timeline")
    with gr.Row():
        segments = gr.Dataframe(label="Segments", interactive=False, visible=False, elem_id="segments", scale=3)
        result = gr.File(label="Full result (JSON)", interactive=False, visible=False, elem_id="result-json",
                         scale=1)
    explanation = gr.Image(label="Why: each sampled frame with where the model looked (Grad-CAM, red is hot) and, "
                           "below it, how much the answer drops without that frame (occlusion)", interactive=False,
                           format="jpeg", visible=False, elem_id="explanation")
    explanation_words = gr.Markdown(visible=False, elem_id="explanation-words")
    if not available:
        gr.Markdown("No model is loaded: recognition is unavailable. See *About* for how to train one.")

    # ---- events, wired last
    outputs = [label_a, label_b, annotated, timeline, segments, notice, result, explanation, explanation_words]
    # The parameter names are the API's keyword names; a gr.Progress() default is how Gradio hands in the bar.
    knobs = settings()
    downloads = Downloads(knobs.max_downloads)  # links downloaded at once, beside the turns at the recognizers

    # request: Gradio hands in the visitor's session, whose taught models (ui.teach) this visitor may choose
    def run_recognize(video=None, url="", model="LRCN", start_s=None, end_s=None, explain=False,
                      request: gr.Request = None, progress=gr.Progress()):  # noqa: B008
        return recognize(recognizers, missing, video, url, model, start_s, end_s, progress, bool(explain), turns,
                         downloads, offered(request))

    def run_example(video=None, model="LRCN", explain=False, request: gr.Request = None,
                    progress=gr.Progress()):  # noqa: B008
        return recognize(recognizers, missing, video, "", model, None, None, progress, bool(explain), turns,
                         taught=offered(request))

    def show_model(model: str):
        # a second answer on screen belongs to "both": another choice hides it until its own result comes
        return gr.update(label="LRCN" if model == BOTH else model), gr.update(visible=False) if model != BOTH \
            else gr.update()

    shown = outputs[:5] + outputs[6:]  # all but the notice, which is empty when there is nothing to say
    runs = {
        "recognize": run.click(run_recognize, inputs=[video, url, model, start_s, end_s, explain], outputs=outputs,
                               api_name="recognize", concurrency_id="inference",
                               concurrency_limit=inference_limit(knobs)),
        "recognize_link": url.submit(run_recognize, inputs=[video, url, model, start_s, end_s, explain],
                                     outputs=outputs, api_name="recognize_link", api_visibility="undocumented",
                                     concurrency_id="inference", concurrency_limit=inference_limit(knobs)),
        "recognize_example": examples.load_input_event.then(
            run_example, inputs=[video, model, explain], outputs=outputs, api_name="recognize_example",
            api_visibility="undocumented", concurrency_id="inference", concurrency_limit=inference_limit(knobs)),
    }
    for name, event in runs.items():
        event.success(reveal, inputs=[model, explain], outputs=shown, api_name=f"reveal_{name}",
                      api_visibility="undocumented", queue=False)
    model.change(show_model, inputs=[model], outputs=[label_a, label_b], api_name="show_model",
                 api_visibility="undocumented", queue=False)
    return model

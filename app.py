"""HAR Studio, the Gradio app: Recognize, Test many, Teach, Compare models, About. Builds the page and launches it.

    python app.py    # serves on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT (default 127.0.0.1:7860), or on $PORT

The tabs live in ``ui/`` (one module each) over the ``har`` library. The settings (``HAR_*``, docs/app.md) are
checked first, so that a bad value stops start-up with one line; the models then load once, warmed up, while the
page is built, and every request shares them (``har.Recognizer`` is thread-safe). Handlers turn the library's
:class:`HarError` into ``gr.Error`` with its message; anything else is a bug, logged and shown to a visitor as a
bare "Error", never as a traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import gradio as gr

from har.reports import dashboard
from har.serve.turns import Turns
from ui.about import about_tab
from ui.compare import compare_tab
from ui.recognize import recognize, recognize_tab
from ui.serving import check_models, checked_settings, load_recognizers, remove_outputs, sweep_every
from ui.teach import forget_session, teach_tab
from ui.test_many import test_many, test_many_tab

__all__ = ["build_app", "recognize", "serve", "test_many"]  # the handlers, for callers that skip the page

log = logging.getLogger("har.app")

CACHE_SWEEP_S = 60  # how often Gradio's cache is brought back under HAR_MAX_CACHE_MB between requests


def build_app(recognizers: dict, missing: dict, records: list[dashboard.ModelRecord],
              turns: Turns | None = None) -> gr.Blocks:
    """The page. ``turns``: the recognizers' fair turns (one at a time by default)."""
    turns = turns or Turns(1)
    # Gradio's cache (uploads, outputs) is swept every 15 min of files older than an hour, and emptied at exit;
    # ui.serving caps its size (HAR_MAX_CACHE_MB) at every request and every minute.
    with gr.Blocks(title="HAR Studio", delete_cache=(900, 3600)) as demo:
        gr.Markdown("# HAR Studio\nWhich of six UCF101 actions does a video show? Two architectures, LRCN and "
                    "ConvLSTM, trained and tested on separate groups of clips, compared in the open.")
        with gr.Tab("Recognize", id="recognize"):
            recognize_model = recognize_tab(recognizers, missing, turns)
        with gr.Tab("Test many", id="test-many"):
            batch_model = test_many_tab(recognizers, missing, turns)
        with gr.Tab("Teach", id="teach"):
            teach_tab(recognizers, missing, turns, recognize_model, batch_model)
        with gr.Tab("Compare models", id="compare"):
            compare_tab(records)
        with gr.Tab("About", id="about"):
            about_tab(records)
        demo.unload(forget_session)  # a visitor's taught models (ui.teach) go when they leave
    return demo


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve() -> None:
    knobs = checked_settings()  # before anything slow: a bad HAR_* value is one line and status 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    missing = check_models()
    recognizers: dict = {}
    # TensorFlow's import and the models' warm-up (the slow part of start-up) overlap with building the page.
    with ThreadPoolExecutor(1, thread_name_prefix="load-models") as pool:
        loading = pool.submit(load_recognizers, recognizers, missing)
        # single requests and each video of a batch take turns at the recognizers, as many at once as the queue runs
        demo = build_app(recognizers, missing, dashboard.load_records(), Turns(knobs.concurrency))
        loading.result()
    sweep_every(CACHE_SWEEP_S)
    demo.queue(default_concurrency_limit=knobs.concurrency, max_size=knobs.queue_size)
    port = os.environ.get("PORT", "").strip()  # platforms that route to $PORT (Deta Space, most PaaS)
    log.info("built in %.1f s; %d recognition(s) at once", time.perf_counter() - t0, knobs.concurrency)
    # Platforms and service managers stop a server with SIGTERM, which would end Python on the spot: shut down as on
    # Ctrl-C instead, so that Gradio empties its cache (uploads and outputs) on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if port else None),
        server_port=int(port) if port else None,  # None: $GRADIO_SERVER_PORT, else 7860
        max_file_size=f"{knobs.max_upload_mb}mb",
        show_error=False,  # gr.Error messages still show; other exceptions stay in the log
        footer_links=["api"],
    )
    remove_outputs()  # launch() returns once the server is closed (Ctrl-C, SIGTERM)


if __name__ == "__main__":
    serve()

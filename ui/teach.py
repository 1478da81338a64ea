"""The Teach tab: name an action, give it a few example clips, teach; the Recognize and Test many tabs then offer
the taught model to this visitor, and to no one else.

A visitor's taught models are kept by their session (Gradio's session hash, which every request of that
visitor carries, and no other's): the recognizers, each over a model directory in a folder of its own. They go
when the session ends (``demo.unload``: :func:`forget_session`) or ``HAR_TEACH_MINUTES`` after teaching
(:func:`expire`, every minute), and a newer one replaces the visitor's older one. The
server holds at most ``HAR_TEACH_MODELS`` at once; more are refused until one goes. Teaching takes its turn at the
recognizers (:class:`har.serve.turns.Turns`) as a recognition does.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import gradio as gr

from har import HarError
from har.batch.items import parse_line
from har.media.video import VIDEO_EXTENSIONS
from har.serve.turns import Turns
from har.settings import settings
from ui.serving import output_dir
from ui.shared import MODEL_INFO, MODELS, chosen, docs_link, error

log = logging.getLogger("har.app")

MIN_EXAMPLES = 3  # fewer clips teach too little to be worth a visitor's model
EXPIRE_EVERY_S = 60  # how often taught models past HAR_TEACH_MINUTES are removed
_live: set[str] = set()  # folders of the taught models held now, every session's
_sessions: dict[str, Taught] = {}  # session hash -> its taught models
_lock = threading.Lock()
_expiring = threading.Event()  # set once the expiry thread runs


class Taught:
    """One session's taught models: ``{choice shown: Recognizer}``, each over its own folder."""

    def __init__(self):
        self.models: dict = {}
        self.folders: dict[str, Path] = {}
        self.made = time.monotonic()  # when the newest was taught

    def add(self, choice: str, recognizer, folder: Path) -> None:
        for old in list(self.models):  # one taught model per visitor: the newer replaces the older
            self.remove(old)
        self.models[choice] = recognizer
        self.folders[choice] = folder
        self.made = time.monotonic()

    def remove(self, choice: str) -> None:
        self.models.pop(choice, None)
        folder = self.folders.pop(choice, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            with _lock:
                _live.discard(str(folder))

    def clear(self) -> None:
        for choice in list(self.models):
            self.remove(choice)


def session_of(request) -> str:
    return getattr(request, "session_hash", None) or ""


def offered(request) -> dict:
    """``{choice: Recognizer}`` of the taught models of ``request``'s session (none for a session that taught
    nothing, or a call without a session)."""
    session = session_of(request)
    with _lock:
        taught = _sessions.get(session) if session else None
    return dict(taught.models) if taught is not None else {}


def forget_session(request: gr.Request) -> None:
    """``demo.unload``: the leaving session's taught models and their folders go."""
    with _lock:
        taught = _sessions.pop(session_of(request), None)
    if taught is not None:
        taught.clear()
        log.info("a session's taught models were removed")


def expire() -> None:
    """Remove the taught models made more than ``HAR_TEACH_MINUTES`` ago (their sessions' states expire too)."""
    limit = settings().teach_minutes * 60
    with _lock:
        old = [k for k, t in _sessions.items() if time.monotonic() - t.made > limit]
        gone = [_sessions.pop(k) for k in old]
    for taught in gone:
        taught.clear()


def _expire_every(seconds: float) -> None:
    if _expiring.is_set():
        return
    _expiring.set()

    def loop() -> None:
        while True:
            time.sleep(seconds)
            expire()

    threading.Thread(target=loop, name="taught-expiry", daemon=True).start()


def _examples(files: list[str] | None, links: str) -> list:
    clips: list = []
    for f in files or []:
        if Path(f).suffix.lower() not in VIDEO_EXTENSIONS:
            raise error(f"'{Path(f).name}' is not a video file ({', '.join(VIDEO_EXTENSIONS)}).")
        clips.append(str(f))
    for i, line in enumerate((links or "").splitlines(), 1):
        try:
            entry = parse_line(line, None, f"link line {i}")
        except HarError as exc:
            raise error(str(exc)) from exc
        if entry is None:
            continue
        if not entry["link"]:
            raise error(f"Link line {i} ('{line.strip()[:60]}') is not a link: upload files above instead.")
        # "link, start, end": the second field is the start here (the action's name is given above)
        fields = [x.strip() for x in line.split(",")]
        start, end = (fields + ["", ""])[1:3]
        try:
            clips.append((entry["input"], float(start) if start else None, float(end) if end else None))
        except ValueError:
            raise error(f"Link line {i}: write 'link, start second, end second' (numbers).") from None
    return clips


def teach_action(recognizers: dict, missing: dict, name: str, files: list[str] | None, links: str, model: str,
                 session: str, progress, turn=nullcontext, recording: str | None = None) -> tuple:
    """Teach ``model`` the action ``name`` from uploads, a webcam ``recording`` and links, for ``session`` (a
    session hash) only; returns (a message, the zip of the taught model directory, the new choice, the session's
    taught models)."""
    from har.teaching.api import teach

    base = chosen(model, recognizers, missing, list(MODELS))[model]
    clips = _examples([*(files or []), *([recording] if recording else [])], links)
    most = settings().teach_examples
    if not MIN_EXAMPLES <= len(clips) <= most:
        raise error(f"Give {MIN_EXAMPLES} to {most} example clips of the action; {len(clips)} given.")
    if not session:
        raise error("Teaching needs a session of the app (a browser tab or a gradio_client Client).")
    with _lock:
        taught = _sessions.get(session) or Taught()
        mine = {str(f) for f in taught.folders.values()}
        if len(_live - mine) >= settings().teach_models:
            raise error(f"This server holds {settings().teach_models} visitors' taught models already "
                        "(HAR_TEACH_MODELS); try again in a few minutes.")
    folder = Path(tempfile.mkdtemp(prefix="har-taught-"))
    with _lock:
        _live.add(str(folder))
    try:
        with turn():
            rec = teach(base, {name: clips}, folder / "model",
                        progress=lambda f, msg: progress(f, desc=msg))
    except HarError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        with _lock:
            _live.discard(str(folder))
        raise error(str(exc)) from exc
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        with _lock:
            _live.discard(str(folder))
        log.exception("teaching failed")
        raise
    new = rec.config.taught["classes"]
    choice = f"{model} + {', '.join(new)}"
    taught.add(choice, rec, folder)
    with _lock:
        _sessions[session] = taught
    _expire_every(EXPIRE_EVERY_S)
    archive = shutil.make_archive(str(output_dir() / f"{model.lower()}-{'-'.join(new)}"), "zip", folder, "model")
    minutes = settings().teach_minutes
    message = (f"**{choice}** knows {len(rec.config.classes)} actions, taught from "
               f"{len(rec.config.taught['examples'])} clips in {rec.config.taught['seconds']:.1f} s. Choose "
               f"*{choice}* in Recognize or Test many: it is yours alone, kept for {minutes:g} minutes or until "
               "you leave. Download it to serve it yourself: unzip, then `python -m har predict VIDEO --model "
               "model`.")
    return message, archive, choice, taught


def offer(taught: Taught, with_both: bool):
    """The model choices of Recognize (``with_both``) or Test many, with this session's taught models."""
    from ui.shared import CHOICES

    base = CHOICES if with_both else list(MODELS)
    return gr.update(choices=[*base, *taught.models])


def teach_tab(recognizers: dict, missing: dict, turns: Turns, recognize_model: gr.Radio, batch_model: gr.Radio
              ) -> None:
    """The tab; a model taught joins this session's choices of ``recognize_model`` (Recognize) and ``batch_model``
    (Test many): the session's own copy of each, which is what its requests are checked against."""
    most = settings().teach_examples
    gr.Markdown(f"Teach the models an action of your own: name it, give {MIN_EXAMPLES} to {most} short clips of "
                "it (uploads, or links with the seconds to take), and press Teach. The taught model knows the six "
                "actions and yours; Recognize and Test many then offer it, to you alone, until you leave. "
                f"How well it learns from a few clips: *Compare models*; how it works: "
                f"{docs_link('teach.md', 'teaching new actions')}.")
    with gr.Row():
        with gr.Column(scale=5):
            name = gr.Textbox("", label="The action's name", max_lines=1, elem_id="teach-name",
                              placeholder="e.g. Juggling")
            files = gr.File(label=f"Example clips ({MIN_EXAMPLES}-{most} in all, with the links)",
                            file_count="multiple", file_types=list(VIDEO_EXTENSIONS), elem_id="teach-files")
            recording = gr.Video(label="…and/or record one with the webcam", sources=["webcam"], height=200,
                                 elem_id="teach-recording")
            links = gr.Textbox("", label="…and/or links, one per line, optionally “, start second, end second”",
                               lines=3, max_lines=12, elem_id="teach-links",
                               placeholder="https://www.youtube.com/watch?v=…, 12, 18")
            model = gr.Radio(list(MODELS), value="LRCN", label="Teach", info=MODEL_INFO, elem_id="teach-model")
            run = gr.Button("Teach", variant="primary", elem_id="teach-run")
        with gr.Column(scale=6):
            message = gr.Markdown(elem_id="teach-message")
            archive = gr.File(label="The taught model (zip)", interactive=False, elem_id="teach-zip")
            choice = gr.Textbox(visible=False, elem_id="teach-choice")

    def run_teach(name="", files=None, links="", model="LRCN", recording=None, request: gr.Request = None,
                  progress=gr.Progress()):  # noqa: B008
        *shown, taught = teach_action(recognizers, missing, name, files, links, model, session_of(request), progress,
                                      turns, recording)
        return *shown, offer(taught, True), offer(taught, False)

    run.click(run_teach, inputs=[name, files, links, model, recording],
              outputs=[message, archive, choice, recognize_model, batch_model], api_name="teach",
              concurrency_id="inference")

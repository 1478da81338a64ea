"""The housekeeping of a running server: settings checked at start, recognizers loaded, output folders, the cache.

Gradio keeps uploads and outputs in its cache (``gradio.utils.get_upload_folder()``), sweeps files older than an
hour every 15 minutes and empties it at exit; :func:`har.serve.cache.sweep` caps its size (``HAR_MAX_CACHE_MB``)
at every request and every minute. Single requests and each item of a batch take turns at the recognizers
(:class:`har.serve.turns.Turns`), so a batch holds up another visitor for one item at most. Links are downloaded
beside the recognitions, at most ``HAR_MAX_DOWNLOADS`` at once (:class:`Downloads`), so a slow link delays its own
visitor only: the queue runs that many more requests at once (:func:`inference_limit`), and one more link is told
"busy" at once rather than holding a worker.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio.utils

from har import HarError
from har.serve.cache import max_cache_bytes, sweep
from har.settings import Settings, settings
from ui.shared import MODELS, error

log = logging.getLogger("har.app")

EMPTY_FOLDER_AGE_S = 600  # an empty output folder younger than this may be another request's, not written yet


def checked_settings() -> Settings:
    """Every ``HAR_*`` setting, parsed before anything slow starts: a bad value stops start-up with one line
    (``error: ...``, status 1), not at the first request."""
    try:
        return settings()
    except HarError as exc:
        raise SystemExit(f"error: {exc}") from None


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
            # ONNX Runtime when the model's ONNX copy is current and no GPU is present (HAR_RUNTIME overrides).
            into[choice] = Recognizer(name, runtime="auto")
            log.info("%s loaded and warmed up in %.1f s (%s)", choice, time.perf_counter() - t0,
                     into[choice].runtime)
        except HarError as exc:
            missing[choice] = str(exc)
            log.warning("%s is unavailable: %s", choice, exc)


def output_dir() -> Path:
    """A fresh directory for one request's outputs inside Gradio's cache: Gradio serves them from there without a
    copy and deletes them with the rest of its cache (``delete_cache``). The cache is first kept under its size
    cap, and old empty folders of earlier requests go (the sweep removes files, not their folders)."""
    cache = Path(gradio.utils.get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    sweep(cache, max_cache_bytes())  # the size cap (the age sweep is Gradio's)
    for old in cache.glob("har-*"):
        try:
            if old.is_dir() and time.time() - old.stat().st_mtime > EMPTY_FOLDER_AGE_S and not any(old.iterdir()):
                old.rmdir()  # fails harmlessly if a file appeared meanwhile
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="har-", dir=cache))


def remove_outputs() -> None:
    """At shutdown: every request's output folder goes. Gradio empties the files it tracks; with a ``demo.unload``
    event registered it no longer removes the outputs handed back to sessions, so they are removed here."""
    cache = Path(gradio.utils.get_upload_folder())
    for folder in cache.glob("har-*"):
        shutil.rmtree(folder, ignore_errors=True)


def sweep_every(seconds: float) -> None:
    """Keep Gradio's cache under HAR_MAX_CACHE_MB between requests too (a burst of uploads comes before any)."""
    def loop() -> None:
        while True:
            time.sleep(seconds)
            try:
                sweep(gradio.utils.get_upload_folder(), max_cache_bytes())
            except (OSError, HarError) as exc:
                log.warning("cache sweep failed: %s", exc)

    threading.Thread(target=loop, name="cache-sweep", daemon=True).start()


def inference_limit(knobs: Settings) -> int:
    """Requests of the Recognize tab run at once: the recognitions (which take turns) plus the downloads."""
    return knobs.concurrency + knobs.max_downloads


class Downloads:
    """At most ``n`` links downloaded at once; one more is refused at once with a "busy" message (a request
    waiting here would hold a worker that an upload could use)."""

    def __init__(self, n: int):
        assert n >= 1, n
        self.n = n
        self._slots = threading.BoundedSemaphore(n)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            s = "s" if self.n > 1 else ""
            raise error(f"Busy: this server is already downloading {self.n} link{s}, as many as it downloads at once "
                        "(HAR_MAX_DOWNLOADS). Try again in a minute, or upload the clip.")
        try:
            yield
        finally:
            self._slots.release()

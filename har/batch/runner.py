"""Running a batch (:func:`run`): every item recognised, one result row each, as soon as it is known.

Links are downloaded a few at a time (``jobs``) through :func:`har.links.fetch.download` (the same rules and limits
as a single link) while the recognizer works on whichever item is ready, lowest position first; at most
``jobs + 1`` downloads wait on disk. Each item becomes one row (:func:`row_of`, keys
:data:`har.batch.results.FIELDS`), a failure too (its ``error``). The items come from :mod:`har.batch.items`; the
rows go to :class:`har.batch.results.Results`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from har import UNCERTAIN
from har.batch.items import Item
from har.batch.results import FIELDS
from har.errors import HarError
from har.links.fetch import FetchLimits, download

log = logging.getLogger(__name__)

# Words of the messages that mean "refused by a rule of this server" rather than "failed": har.links.fetch's host and
# address rules, and the length and size limits (har.media.limits, har.links.options).
_REFUSALS = ("not an allowed host", "local or reserved network", "HAR_MAX_VIDEO_SECONDS", "HAR_MAX_DOWNLOAD_MB",
             "can be analysed. Trim it", "playlist or a channel", "live stream")


def status_of(message: str) -> str:
    """``refused`` for a message of a server rule (hosts, addresses, length, size), else ``failed``."""
    return "refused" if any(w in message for w in _REFUSALS) else "failed"


def row_of(item: Item, analysis=None, seconds: float = 0.0, error: str | None = None) -> dict[str, Any]:
    """The result row of one item (keys :data:`FIELDS`): from its :class:`har.Analysis`, or its error."""
    row: dict[str, Any] = {k: None for k in FIELDS}
    row.update(n=item.n, input=item.input, expected=item.expected, start_s=item.start_s, end_s=item.end_s,
               seconds=round(seconds, 2))
    if analysis is None:
        row.update(status=status_of(error or ""), error=error or "unknown error", top=[])
        return row
    clip = analysis.clip
    d = clip.to_dict()
    row.update(status="ok", label=clip.label, score=d["top"][0]["score"], uncertain=clip.uncertain, top=d["top"],
               read_s=d["read_s"], length_s=d["length_s"], warning=clip.read_warning(),
               familiarity=getattr(clip, "familiarity", None))  # carried by models that measure it; else null
    if item.expected is not None:
        row["correct"] = same_label(clip.label, item.expected, clip.classes)
    return row


def truth_of(expected: str, classes: Sequence[str]) -> str:
    """The model's spelling of an expected label (case and spaces ignored); any label the model does not know
    (and "none") stands for :data:`har.UNCERTAIN`: the right answer to an action it was not taught."""
    def key(s: str) -> str:
        return re.sub(r"[\s_-]+", "", s).lower()

    return next((c for c in classes if key(c) == key(expected)), UNCERTAIN)


def same_label(label: str, expected: str, classes: Sequence[str]) -> bool:
    return label == truth_of(expected, classes)


@dataclass
class _Ready:
    path: Path
    tmp: Path | None  # the download's folder, removed once recognised
    seconds: float  # spent fetching


def _prepare(item: Item, limits: FetchLimits, workdir: Path) -> _Ready:
    """A local path to recognise: the file itself, or the link downloaded into a folder of its own."""
    t0 = time.perf_counter()
    if not item.link:
        if item.start_s is not None or item.end_s is not None:
            raise HarError("Start and end seconds apply to links only; trim a local file before testing it.")
        return _Ready(Path(item.input), None, 0.0)
    tmp = Path(tempfile.mkdtemp(prefix=f"item-{item.n}-", dir=workdir))
    try:
        path = download(item.input, tmp, start_s=item.start_s, end_s=item.end_s, limits=limits)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _Ready(path, tmp, time.perf_counter() - t0)


def run(items: Sequence[Item], recognizer, *, top_k: int = 5, jobs: int = 2, limits: FetchLimits | None = None,
        workdir: str | os.PathLike | None = None,
        turn: Callable[[], AbstractContextManager] = nullcontext) -> Iterator[dict[str, Any]]:
    """Recognise every item, yielding its row (:func:`row_of`) as soon as it is known.

    ``recognizer``: a :class:`har.Recognizer`. ``jobs``: downloads at once. ``workdir``: where downloads
    wait (default a temporary folder), emptied first (a killed run's leftovers) and removed at the end.
    ``turn()``: a context manager held around each recognition (the app's fair share of its recognizers).
    """
    from har import analyze

    limits = limits or FetchLimits.from_env()
    if workdir is None:
        work = Path(tempfile.mkdtemp(prefix="har-batch-"))
    else:
        work = Path(workdir)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    pool = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="har-batch-fetch")
    todo = list(items)
    window: dict[Future, Item] = {}
    ahead = max(1, jobs) + 1  # items being fetched or fetched, not yet recognised: bounds the disk used

    def fill() -> None:
        while todo and len(window) < ahead:
            item = todo.pop(0)
            window[pool.submit(_prepare, item, limits, work)] = item

    try:
        fill()
        while window:
            done, _ = wait(window, return_when=FIRST_COMPLETED)
            future = min(done, key=lambda f: window[f].n)
            item = window.pop(future)
            fill()  # the next downloads start before this item is recognised
            yield _recognize(item, future, recognizer, analyze, top_k, turn)
    finally:
        for future in window:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(work, ignore_errors=True)


def _recognize(item: Item, future: Future, recognizer, analyze, top_k: int, turn) -> dict[str, Any]:
    ready: _Ready | None = None
    t0 = time.perf_counter()
    try:
        ready = future.result()
        with turn():
            analysis = analyze(ready.path, recognizer, timeline=False, top_k=top_k)[recognizer.name]
        return row_of(item, analysis, ready.seconds + time.perf_counter() - t0)
    except HarError as exc:
        return row_of(item, seconds=(ready.seconds if ready else 0.0) + time.perf_counter() - t0, error=str(exc))
    except Exception as exc:  # a bug, or a library's surprise: logged in full, and the batch goes on
        log.exception("item %d (%s) failed", item.n, item.input)
        return row_of(item, seconds=(ready.seconds if ready else 0.0) + time.perf_counter() - t0,
                      error=f"Unexpected error ({type(exc).__name__}: {exc}); the log has the details.")
    finally:
        if ready is not None and ready.tmp is not None:
            shutil.rmtree(ready.tmp, ignore_errors=True)

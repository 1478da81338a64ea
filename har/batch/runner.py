"""Test many videos at once: the items of a batch, running them, and the result files that make ``--resume`` work.

Inputs (:func:`collect`): video files, folders (a sub-folder per class gives each video inside its expected
label, as for ``evaluate``; videos directly in the folder have none), list files and links. A list file is CSV
(``.csv``/``.tsv``: columns ``input, expected, start, end`` by position, or by a header naming them) or plain
text (any other name: one item a line, ``link-or-path[, Label[, start[, end]]]``; ``#`` starts a comment).
Paths in a list are relative to the list's folder.

Running (:func:`run`): links are downloaded a few at a time (``jobs``) through :func:`har.links.fetch.download` (the
same rules and limits as a single link) while the recognizer works on whichever item is ready, lowest position
first; at most ``jobs + 1`` downloads wait on disk. Each item becomes one row (:func:`row_of`), a failure too
(its ``error``), and rows come out as soon as they are known.

Result files in the output folder (:class:`Results`): ``results.jsonl`` (one JSON object a row, written and
synced first: the source of truth), ``results.csv`` (the same rows; rebuilt from the JSONL on resume, so a row
cut by a kill is never lost or doubled), ``batch.json`` (the batch: model and items; a resumed run must be the
same batch) and, at the end, ``summary.json`` / ``summary.txt`` (:mod:`har.batch.report`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from har import UNCERTAIN
from har.errors import HarError
from har.links.fetch import FetchLimits, download, is_url
from har.media.video import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".tsv")
LIST_SUFFIXES = (*CSV_SUFFIXES, ".txt", ".list")
# Column names a CSV header may use, per field.
_COLUMNS = {"input": ("input", "link", "url", "path", "file", "video"),
            "expected": ("expected", "label", "class", "action", "truth"),
            "start_s": ("start", "start_s", "from"), "end_s": ("end", "end_s", "to")}
# The result row, in CSV column order (the JSON line has the same keys, "top" as a list).
FIELDS = ("n", "input", "expected", "start_s", "end_s", "status", "label", "score", "correct", "uncertain", "top",
          "familiarity", "read_s", "length_s", "warning", "seconds", "error")
# Words of the messages that mean "refused by a rule of this server" rather than "failed": har.links.fetch's host and
# address rules, and the length and size limits (har.media.limits, har.links.fetch).
_BARE_LINK = re.compile(r"^(www\.)?[\w-]+(\.[\w-]+)*\.[a-z]{2,}(:\d+)?/\S*$", re.IGNORECASE)
_REFUSALS = ("not an allowed host", "local or reserved network", "HAR_MAX_VIDEO_SECONDS", "HAR_MAX_DOWNLOAD_MB",
             "can be analysed. Trim it", "playlist or a channel", "live stream")


@dataclass(frozen=True)
class Item:
    """One video of a batch."""

    n: int  # 1-based position in the batch: its identity in the result files
    input: str  # a link, or a file's path
    expected: str | None = None  # the expected label as given (None: not given)
    start_s: float | None = None  # links only: download from this second on
    end_s: float | None = None  # links only: download up to this second
    link: bool = False  # True: fetched with har.links.fetch (never read as a local path)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "input": self.input, "expected": self.expected, "start_s": self.start_s,
                "end_s": self.end_s, "link": self.link}


# ---- inputs ---------------------------------------------------------------------------------------------------


def _seconds(text: str, what: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise HarError(f"{where}: the {what} time '{text}' is not a number of seconds (0 or more).")
    return value


def _entry(fields: Sequence[str], base: Path | None, where: str) -> dict[str, Any] | None:
    """``{input, expected, start_s, end_s, link}`` of one list line's fields, or None for a blank line."""
    fields = [f.strip() for f in fields] + [""] * 4
    if not fields[0]:
        return None
    text = fields[0]
    # a link, also without its scheme ("youtube.com/watch?v=..."; har.links.fetch adds https://) unless such a file
    # exists
    link = is_url(text) or bool(_BARE_LINK.match(text) and not (base is None or (base / text).exists()))
    if not link and base is not None:
        path = Path(text).expanduser()
        text = str(path if path.is_absolute() else base / path)
    return {"input": text, "expected": fields[1] or None, "start_s": _seconds(fields[2], "start", where),
            "end_s": _seconds(fields[3], "end", where), "link": link}


def parse_line(line: str, base: Path | None = None, where: str = "line") -> dict[str, Any] | None:
    """One line of a plain-text list or of the app's box: ``link-or-path[, Label[, start[, end]]]`` (commas or
    tabs). None for a blank line or a ``#`` comment. ``base``: the folder relative paths start from; None keeps
    the text as it is (the app: never a path on the server)."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    sep = "\t" if "\t" in line else ","
    return _entry(next(csv.reader([line], delimiter=sep, skipinitialspace=True)), base, where)


def read_list(path: Path) -> list[dict[str, Any]]:
    """The entries of a list file (see the module docstring). Raises :class:`HarError` for an unreadable list or a
    line whose start or end is not a number."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarError(f"The list '{path}' cannot be read: {getattr(exc, 'strerror', None) or exc}.") from exc
    base = path.resolve().parent
    out: list[dict[str, Any]] = []
    if path.suffix.lower() not in CSV_SUFFIXES:
        for i, line in enumerate(text.splitlines(), 1):
            entry = parse_line(line, base, f"{path.name}, line {i}")
            if entry:
                out.append(entry)
        return out
    rows = list(csv.reader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",",
                           skipinitialspace=True))
    order = list(range(4))  # field -> column
    names = [c.strip().lower() for c in rows[0]] if rows else []
    known = {a for aliases in _COLUMNS.values() for a in aliases}
    if set(names) & set(_COLUMNS["input"]) and all(n in known for n in names if n):  # a header row
        order = [next((names.index(a) for a in aliases if a in names), -1) for aliases in _COLUMNS.values()]
        rows = [[""]] + rows[1:]  # keep line numbers
    for i, row in enumerate(rows, 1):
        if not row or row[0].strip().startswith("#"):
            continue
        fields = [row[c] if 0 <= c < len(row) else "" for c in order]
        entry = _entry(fields, base, f"{path.name}, line {i}")
        if entry:
            out.append(entry)
    return out


def pasted_items(text: str, uploads: Sequence[Path] = ()) -> list[Item]:
    """The items of the app's Test many box and uploads: each line of ``text`` is a link
    (``link[, Label[, start[, end]]]``), never a path on the server, except a line naming an uploaded file, which
    gives that file its label; then the uploads, in order. Raises :class:`HarError` for a bad start or end."""
    names = {f.name for f in uploads}
    entries, labels = [], {}
    for i, line in enumerate(text.splitlines(), 1):
        entry = parse_line(line, None, f"Line {i}")
        if entry is None:
            continue
        if entry["input"] in names:
            labels[entry["input"]] = entry["expected"]
        else:
            entries.append({**entry, "link": True})
    entries += [{"input": str(f), "expected": labels.get(f.name)} for f in uploads]
    return [Item(n, **e) for n, e in enumerate(entries, 1)]


def _folder(d: Path) -> list[dict[str, Any]]:
    """Videos directly in ``d`` (no label), then those of each sub-folder (labelled with its name), sorted."""
    def videos(folder: Path, recursive: bool) -> list[Path]:
        found = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(f for f in found if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)

    out = [{"input": str(f), "expected": None} for f in videos(d, False)]
    for sub in sorted(s for s in d.iterdir() if s.is_dir() and not s.name.startswith(".")):
        out += [{"input": str(f), "expected": sub.name} for f in videos(sub, True)]
    return out


def collect(inputs: Iterable[str]) -> list[Item]:
    """The batch's items from the command line's inputs, in order. Raises :class:`HarError` when an input
    cannot be used at all (a path that does not exist, an unreadable list, a folder without videos, nothing)."""
    entries: list[dict[str, Any]] = []
    for text in inputs:
        if is_url(text):
            entries.append({"input": text.strip(), "link": True})
            continue
        p = Path(text).expanduser()
        if not p.exists():
            raise HarError(f"'{text}' does not exist: give video files, folders, list files (.csv, .txt) or links.")
        if p.is_dir():
            found = _folder(p)
            if not found:
                raise HarError(f"The folder '{text}' holds no video ({', '.join(VIDEO_EXTENSIONS[:5])}, ...) "
                               "directly or in its class folders.")
            entries += found
        elif p.suffix.lower() in LIST_SUFFIXES:
            entries += read_list(p)
        else:
            entries.append({"input": str(p)})
    if not entries:
        raise HarError("No videos to test: the inputs (lists, folders) name none.")
    return [Item(n, **e) for n, e in enumerate(entries, 1)]


# ---- running --------------------------------------------------------------------------------------------------


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


# ---- result files ---------------------------------------------------------------------------------------------


def csv_row(row: dict[str, Any]) -> list[str]:
    """A result row as CSV cells: top-k as ``Label 0.93; Label 0.04``, absent values empty."""
    out = []
    for k in FIELDS:
        v = row.get(k)
        if k == "top":
            v = "; ".join(f"{s['label']} {s['score']:.4f}" for s in v or [])
        out.append("" if v is None else str(v))
    return out


class Results:
    """The result files of one batch in ``out`` (see the module docstring).

    ``manifest``: what makes the batch this batch (model, top-k, items); written to ``batch.json``. An ``out``
    holding results already needs ``resume=True`` and the same manifest, else :class:`HarError` says so.
    """

    def __init__(self, out: str | os.PathLike, manifest: dict[str, Any], resume: bool = False):
        self.out = Path(out)
        self.jsonl, self.csv, self.manifest_path = (self.out / "results.jsonl", self.out / "results.csv",
                                                    self.out / "batch.json")
        self.rows: dict[int, dict[str, Any]] = {}
        if self.out.exists() and not self.out.is_dir():
            raise HarError(f"--out '{out}' is a file: give a folder for the results.")
        if self.jsonl.exists() and not resume:
            raise HarError(f"'{out}' already holds a batch's results: add --resume to continue it, or choose "
                           "another --out folder.")
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and self.manifest_path.exists():
            before = json.loads(self.manifest_path.read_text())
            if before != manifest:
                what = "model or top-k" if before.get("items") == manifest.get("items") else "inputs"
                raise HarError(f"The {what} differ from those of the batch in '{out}': --resume continues the same "
                               "batch; choose another --out folder for a new one.")
        if resume and self.jsonl.exists():
            self._load()
        self.manifest_path.write_text(json.dumps(manifest, indent=1))
        # The CSV is rebuilt from the JSON lines: a row a kill cut short is written again, whole, exactly once.
        with open(self.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(FIELDS)
            w.writerows(csv_row(r) for r in self.sorted())

    def _load(self) -> None:
        good, size = [], 0
        with open(self.jsonl, "rb") as f:
            for raw in f:
                try:
                    row = json.loads(raw)
                    assert raw.endswith(b"\n") and isinstance(row, dict) and isinstance(row.get("n"), int)
                except (ValueError, AssertionError):
                    break  # the line a kill cut short, and anything after it: redone
                good.append(row)
                size += len(raw)
        with open(self.jsonl, "r+b") as f:
            f.truncate(size)
        for row in good:
            self.rows[row["n"]] = row

    @property
    def done(self) -> set[int]:
        return set(self.rows)

    def sorted(self) -> list[dict[str, Any]]:
        return [self.rows[n] for n in sorted(self.rows)]

    def add(self, row: dict[str, Any]) -> None:
        """Record one row: the JSON line first (flushed to disk), then the CSV row."""
        assert row["n"] not in self.rows, f"item {row['n']} recorded twice"
        self.rows[row["n"]] = row
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with open(self.csv, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(csv_row(row))


def manifest(items: Sequence[Item], model: str, top_k: int) -> dict[str, Any]:
    return {"model": model, "top_k": top_k, "items": [i.to_dict() for i in items]}

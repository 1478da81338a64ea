"""The items of a batch: what to test, from the command line's inputs (:func:`collect`) or the app's box
(:func:`pasted_items`).

Inputs: video files, folders (a sub-folder per class gives each video inside its expected label, as for
``evaluate``; videos directly in the folder have none), list files and links. A list file is CSV (``.csv``/``.tsv``:
columns ``input, expected, start, end`` by position, or by a header naming them) or plain text (any other name: one
item a line, ``link-or-path[, Label[, start[, end]]]``; ``#`` starts a comment). Paths in a list are relative to
the list's folder.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from har.errors import HarError
from har.links.fetch import is_url
from har.media.video import VIDEO_EXTENSIONS

CSV_SUFFIXES = (".csv", ".tsv")
LIST_SUFFIXES = (*CSV_SUFFIXES, ".txt", ".list")
# Column names a CSV header may use, per field.
_COLUMNS = {"input": ("input", "link", "url", "path", "file", "video"),
            "expected": ("expected", "label", "class", "action", "truth"),
            "start_s": ("start", "start_s", "from"), "end_s": ("end", "end_s", "to")}
_BARE_LINK = re.compile(r"^(www\.)?[\w-]+(\.[\w-]+)*\.[a-z]{2,}(:\d+)?/\S*$", re.IGNORECASE)


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
    # a link, also without its scheme ("youtube.com/watch?v=..."; har.links.fetch adds https://) unless such a
    # file exists
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

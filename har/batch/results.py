"""The result files of a batch, which make ``--resume`` work (:class:`Results`).

In the output folder: ``results.jsonl`` (one JSON object a row, written and synced first: the source of truth),
``results.csv`` (the same rows; rebuilt from the JSONL on resume, so a row cut by a kill is never lost or doubled),
``batch.json`` (the batch: model and items; a resumed run must be the same batch) and, at the end,
``summary.json`` / ``summary.txt`` (:mod:`har.batch.report`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from har.errors import HarError

if TYPE_CHECKING:
    from har.batch.items import Item

# The result row, in CSV column order (the JSON line has the same keys, "top" as a list).
FIELDS = ("n", "input", "expected", "start_s", "end_s", "status", "label", "score", "correct", "uncertain", "top",
          "familiarity", "read_s", "length_s", "warning", "seconds", "error")


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

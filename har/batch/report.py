"""The summary of a batch (:mod:`har.batch.runner`): what was answered, how well, and what was refused or failed.

:func:`summarize` turns result rows into one dictionary (``summary.json``)::

    {"items", "answered", "refused", "failed", "uncertain", "partly_read": [{n, input, read_s, length_s}],
     "labelled": rows with an expected label, "scored": those answered, "correct", "accuracy" (None when nothing
     was scored),
     "macro_f1", "labels": the model's classes + UNCERTAIN, "per_class": {label: {precision, recall, f1, support}},
     "confusion": [[...]]  # rows = expected, columns = answered, in "labels" order,
     "not_known": {label: count}  # expected labels the model does not know: counted as UNCERTAIN,
     "reasons": [{"status", "reason", "count"}]}  # refusals and failures, most frequent first

It holds no timings, so a batch killed and resumed has the same summary as one run straight through.
:func:`summary_text` renders it for a terminal (``summary.txt``), :func:`summary_markdown` for the app.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from har import UNCERTAIN
from har.batch.runner import truth_of
from har.evaluation.evaluate import metrics

TABLE_HEADERS = ["#", "Video", "Expected", "Answer", "Confidence", "Right", "Read (s)", "Time (s)", "Notice"]


def table_row(row: dict[str, Any]) -> list[Any]:
    """A result row as the cells of :data:`TABLE_HEADERS` (the app's table): the answer or the status, the share
    of the video read, the warning or error, else the runners-up."""
    if row["status"] != "ok":
        cells = [row["status"], "", "", "", row["error"]]
    else:
        rest = ", ".join(f"{s['label']} {s['score']:.0%}" for s in row["top"][1:] if s["score"] >= 0.05)
        right = "" if row["correct"] is None else "✓" if row["correct"] else "✗"
        read = f"{row['read_s']:.1f} of {row['length_s']:.1f}" if row["length_s"] else f"{row['read_s']:.1f}"
        cells = [row["label"], f"{row['score']:.0%}", right, read, row["warning"] or (f"then {rest}" if rest else "")]
    return [row["n"], row["input"], row["expected"] or "", *cells[:4], f"{row['seconds']:.1f}", cells[4]]


def reason_of(message: str) -> str:
    """A message without what names one item (quoted names, addresses), so equal causes count together."""
    message = re.sub(r"'[^']*'", "'…'", message)
    return re.sub(r"https?://\S+", "…", message)


def summarize(rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> dict[str, Any]:
    """The summary of result rows (keys :data:`har.batch.results.FIELDS`) of a model with ``classes``."""
    rows = sorted(rows, key=lambda r: r["n"])
    labels = [*classes, UNCERTAIN]
    answered = [r for r in rows if r["status"] == "ok"]
    scored = [r for r in answered if r.get("expected")]
    ids = {c: i for i, c in enumerate(labels)}
    y_true = np.array([ids[truth_of(r["expected"], classes)] for r in scored], dtype=np.int64)
    y_pred = np.array([ids.get(r["label"], ids[UNCERTAIN]) for r in scored], dtype=np.int64)
    m = metrics(y_true, y_pred, labels)
    reasons = Counter((r["status"], reason_of(r["error"])) for r in rows if r["status"] != "ok")
    return {
        "items": len(rows),
        "answered": len(answered),
        "refused": sum(r["status"] == "refused" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "uncertain": sum(bool(r["uncertain"]) for r in answered),
        "partly_read": [{"n": r["n"], "input": r["input"], "read_s": r["read_s"], "length_s": r["length_s"]}
                        for r in answered if r.get("warning")],
        "labelled": sum(bool(r.get("expected")) for r in rows),
        "scored": len(scored),
        "correct": int((y_true == y_pred).sum()),
        "accuracy": m["accuracy"] if scored else None,
        "macro_f1": m["macro_f1"] if scored else None,
        "labels": labels,
        "per_class": m["per_class"],
        "confusion": m["confusion"],
        "not_known": dict(Counter(r["expected"] for r in scored if truth_of(r["expected"], classes) == UNCERTAIN
                                  and r["expected"].strip().lower() not in ("none", UNCERTAIN))),
        "reasons": [{"status": s, "reason": why, "count": k} for (s, why), k in
                    sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))],
    }


def write_summary(out: str | Path, rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> dict[str, Any]:
    """:func:`summarize`, written to ``out/summary.json`` and ``out/summary.txt``; returns the summary."""
    summary = summarize(rows, classes)
    Path(out, "summary.json").write_text(json.dumps(summary, indent=1))
    Path(out, "summary.txt").write_text(summary_text(summary) + "\n")
    return summary


def _counts(s: dict[str, Any]) -> str:
    parts = [f"{s['answered']} answered"]
    parts += [f"{s[k]} {k}" for k in ("refused", "failed") if s[k]]
    text = f"{s['items']} video{'s' if s['items'] != 1 else ''}: " + ", ".join(parts)
    if s["uncertain"]:
        text += f"; {s['uncertain']} answered 'none of the known actions'"
    return text + "."


def _accuracy(s: dict[str, Any]) -> str:
    if not s["scored"]:
        return ("No video with an expected label was answered: no accuracy." if s["labelled"]
                else "No expected labels given: no accuracy.")
    return (f"Accuracy against the expected labels: {s['correct']} of {s['scored']} ({s['accuracy']:.1%}), "
            f"macro-F1 {s['macro_f1']:.3f}.")


def _present(s: dict[str, Any]) -> tuple[list[int], list[int]]:
    """``(rows, columns)`` worth showing: the labels expected; those answered, and always "none of the known
    actions"."""
    c = np.asarray(s["confusion"])
    last = len(s["labels"]) - 1  # UNCERTAIN
    rows = [i for i in range(len(s["labels"])) if c[i].sum()]
    return rows, [j for j in range(last) if c[:, j].sum() or j in rows] + [last]


def _notes(s: dict[str, Any]) -> list[str]:
    lines = []
    if s["not_known"]:
        lines.append("Expected labels the model does not know, counted as 'none of the known actions': "
                     + ", ".join(f"{k} ({v})" for k, v in s["not_known"].items()) + ".")
    for p in s["partly_read"]:
        lines.append(f"Partly read: #{p['n']} {p['input']}: {p['read_s']:.1f} s of {p['length_s']:.1f} s "
                     "(truncated or damaged?): its answer is about that part only.")
    for r in s["reasons"]:
        lines.append(f"{r['status'].capitalize()} ({r['count']}): {r['reason']}")
    return lines


def summary_text(s: dict[str, Any]) -> str:
    """The summary for a terminal: counts, accuracy, per-class table, confusion matrix, notes."""
    out = [_counts(s), _accuracy(s)]
    if s["scored"]:
        rows, cols = _present(s)
        w = max(len(s["labels"][i]) for i in set(rows) | set(cols)) + 2
        out += ["", f"{'label':<{w}}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}"]
        for i in cols:
            row = s["per_class"][s["labels"][i]]
            out.append(f"{s['labels'][i]:<{w}}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>7.3f}"
                       f"{row['support']:>9}")
        c = np.asarray(s["confusion"])
        short = [s["labels"][j] if len(s["labels"][j]) <= 14 else s["labels"][j][:13] + "…" for j in cols]
        cw = max(len(n) for n in short) + 2
        out += ["", "Confusion (rows: expected, columns: answered)", " " * w + "".join(f"{n:>{cw}}" for n in short)]
        for i in rows:
            out.append(f"{s['labels'][i]:<{w}}" + "".join(f"{c[i, j]:>{cw}}" for j in cols))
    notes = _notes(s)
    return "\n".join(out + ([""] + notes if notes else []))


def summary_markdown(s: dict[str, Any]) -> str:
    """The summary for the app (Markdown): the same facts as :func:`summary_text`, as tables."""
    out = [f"**{_counts(s)}** {_accuracy(s)}"]
    if s["scored"]:
        rows, cols = _present(s)
        out += ["", "| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for i in cols:
            row = s["per_class"][s["labels"][i]]
            out.append(f"| {s['labels'][i]} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} | "
                       f"{row['support']} |")
        c = np.asarray(s["confusion"])
        out += ["", "Confusion (rows: expected, columns: answered)", "",
                "| | " + " | ".join(s["labels"][j] for j in cols) + " |", "|---" + "|---:" * len(cols) + "|"]
        for i in rows:
            out.append(f"| **{s['labels'][i]}** | " + " | ".join(str(c[i, j]) for j in cols) + " |")
    notes = _notes(s)
    return "\n".join(out + ([""] + [f"- {n}" for n in notes] if notes else []))

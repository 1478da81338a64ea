"""The measured part of ``docs/openset.md``, written by ``python -m har docs`` from each model's ``openset.json``:
the leave-other-class-out table (per other action, per model) and the shipped operating point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from har.reports.facts import percent

DOC = Path(__file__).resolve().parents[2] / "docs" / "openset.md"
START, END = "<!-- measured -->", "<!-- /measured -->"


def section(reports: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    """The Markdown between :data:`START` and :data:`END`: nothing measured yet says so."""
    shown = {n: r for n, r in reports.items() if r.get("other_actions")}
    if not shown:
        return "No model stores figures on clips of other actions yet (`python benchmarks/bench_openset.py --write`).\n"
    names = list(shown)
    first = shown[names[0]]["other_actions"]
    head = " | ".join(f"{labels.get(n, n)}: AUROC | flagged | known turned away" for n in names)
    lines = [f"| left out | clips (groups) | {head} |",
             "|---|---|" + "---:|---:|---:|" * len(names)]
    for i, row in enumerate(first["per_class"]):
        cells = []
        for n in names:
            r = shown[n]["other_actions"]["per_class"][i]
            cells.append(f"{r['auroc']:.3f} | {percent(r['flagged'], 0)} | {percent(r['known_rejected'])}")
        groups = ", ".join(g.split("/")[1] for g in row["groups"])
        lines.append(f"| {row['left_out']} | {row['clips']} ({groups}) | {' | '.join(cells)} |")
    means = " | ".join(f"**{m['auroc']:.3f}** | **{percent(m['flagged'], 0)}** | **{percent(m['known_rejected'])}**"
                       for m in (shown[n]["other_actions"]["mean"] for n in names))
    lines.append(f"| **mean** | {first['clips']} | {means} |")
    ops = []
    for n in names:
        op = shown[n]["operating_point"]
        served = shown[n].get("runtime", "as served") + (f", {shown[n]['precision']} per-frame half"
                                                           if shown[n].get("precision") else "")
        ops.append(f"- **{labels.get(n, n)}** ({served}): of the "
                   f"{shown[n]['clips']} known test-group clips, {percent(op['known_rejected'])} turned away; test "
                   f"accuracy {percent(op['accuracy'])}, {percent(op['accuracy_with_rejection'])} with a turned-away "
                   f"clip counted wrong; {percent(op['wild_seconds_flagged'], 0)} of the seconds of "
                   f"{len(shown[n]['wild']['videos'])} web videos of other actions flagged (AUROC of their windows "
                   f"against the known test clips {shown[n]['wild']['auroc']:.3f}).")
    return ("Leave-other-class-out on the non-test groups, from each model's `openset.json` (`other_actions`): each "
            "of the other actions in turn is scored by gates fitted without it (and without the known clips' "
            "fold), at a threshold set on the known clips' scores alone to keep 95 % of them.\n\n"
            + "\n".join(lines) + "\n\nAt the shipped threshold, as the app serves each model:\n\n" + "\n".join(ops)
            + "\n")


def with_section(text: str, body: str) -> str:
    """``text`` (docs/openset.md) with its measured section replaced by ``body``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{DOC.name} needs exactly one {START} ... {END} pair")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{body}{END}{tail}"


def write(records: Sequence, doc: Path | None = None) -> Path:
    """Rewrite the measured section of ``doc`` (docs/openset.md) from the records' ``openset.json``."""
    from har.openset.report import load_reports

    doc = doc or DOC
    from har.reports.records import MAIN

    main = [r for r in records if r.name in MAIN]
    reports = {}
    for r in main:
        reports.update(load_reports([r.name], r.directory.parent))
    doc.write_text(with_section(doc.read_text(), section(reports, {r.name: r.label for r in main})))
    return doc

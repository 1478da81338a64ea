"""What a visitor reads of one recognition: the result document (the JSON file) and the notices, in words.

Plain functions over :class:`har.Analysis` results, for the app and any other front end. The notices say what a
result means ("doesn't look like any of the actions LRCN knows; closest: Archery"), never a raw score or a
threshold: those stay in the result document for whoever wants them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from har import __version__


def model_results(analyses: Mapping[str, Any], shown: Mapping[str, str], source: str) -> dict[str, dict]:
    """``{shown name: result dict}`` of ``analyze()``'s ``{model name: Analysis}``; ``shown`` maps a model's name
    to the one a visitor chose ("lrcn" -> "LRCN"). Server paths are left out; each result names its input and
    says how much of the video could be read (``read_warning``, None when all of it)."""
    results = {}
    for name, analysis in analyses.items():
        d = analysis.to_dict()
        d.pop("annotated", None)  # a server path: meaningless to the visitor
        d["input"] = source
        d["read_warning"] = analysis.clip.read_warning()
        results[shown[name]] = d
    return results


def result_document(results: Mapping[str, dict], *, source: str, start_s: float | None = None,
                    end_s: float | None = None, seconds: float) -> dict[str, Any]:
    """The full result of one request, as the JSON file offered for download: what was analysed (a link with its
    section, or a file's name), how long it took, the version, and every model's result."""
    return {"source": source, "start_s": start_s, "end_s": end_s, "seconds": round(seconds, 2),
            "har_studio": __version__, "models": dict(results)}


def label_scores(result: Mapping[str, Any]) -> dict[str, float]:
    """``{class: probability}`` of a model's top classes, best first."""
    return {s["label"]: s["score"] for s in result["top"]}


def unfamiliar(result: Mapping[str, Any]) -> bool:
    """True when a model's open-set score puts the whole video outside what it was trained on."""
    return result.get("familiarity") is not None and result["familiarity"] < result["familiar_above"]


def notice(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The notices of a result in Markdown, one paragraph each, or ``""`` when there is nothing to say: a video
    read only in part; a video unlike any of the known actions (closest action named); an unsure answer."""
    lines = [f"**{name} read only part of the video**: {r['read_warning']}"
             for name, r in results.items() if r.get("read_warning")]
    strange = {name: r for name, r in results.items() if unfamiliar(r)}
    if strange:
        who = f"{next(iter(strange))} knows" if len(strange) == 1 else "these models know"
        closest = {name: r["top"][0]["label"] for name, r in strange.items()}
        if len(set(closest.values())) == 1:
            nearest = next(iter(closest.values()))
        else:
            nearest = ", ".join(f"{label} ({name})" for name, label in closest.items())
        lines.append(f"**This video doesn't look like any of the actions {who}**; closest: {nearest}.")
    lines += [
        f"**{name} is not sure**: its best guess, {r['top'][0]['label']}, is not a confident one. The video may show "
        "none of the actions it knows."
        for name, r in results.items() if r["uncertain"] and name not in strange
    ]
    return "\n\n".join(lines)

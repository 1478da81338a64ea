"""What the pages say about each model, read from its directory's stored files into one typed record.

The model card (About tab and ``docs/model-card.md``), README's results and the Compare tab's captions are
formatted from :class:`ModelFacts` only, so every number a reader sees is the one in ``config.json``,
``metrics.json``, ``openset.json``, ``timeline.json`` or ``benchmark.json``. A file that is missing leaves its
fields ``None`` and the pages say "not measured".
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from har.openset.score import OPENSET_REPORT
from har.reports.records import MAIN, ModelRecord
from har.serve.timeline import settings
from har.train.recipe import retrain_command

ENCODER_NAMES = {"lite0": "EfficientNet-Lite0", "lite1": "EfficientNet-Lite1", "lite2": "EfficientNet-Lite2"}


@dataclass(frozen=True)
class ModelFacts:
    """One model directory's facts as the pages state them. ``None``: the file that records it is missing."""

    name: str  # directory name: "lrcn", "convlstm_tutorial", ...
    label: str  # "LRCN", "ConvLSTM (tutorial)", ...
    retrain: str  # the one command that trains this directory again
    # config.json
    classes: tuple[str, ...]
    frames: int  # frames per window
    size: int  # frame side in pixels
    encoder: str  # frozen ImageNet encoder ("lite0"), "" for none
    encoder_blocks: int  # its MBConv blocks the model uses
    encoder_all_blocks: int  # MBConv blocks the whole encoder has (0 without encoder)
    uncertain_below: float  # a top probability under this is "none of the known actions"
    keep: float | None  # share of held-out known clips the familiarity threshold is set to keep
    groups: dict[str, int]  # split -> groups per class ("train", "validation", "test")
    refit: bool  # the shipped weights were trained again on training + validation groups
    window_s: float  # the timeline's window, as the app runs it (har.serve.timeline.settings)
    hop_s: float  # ... and its hop
    # metrics.json (test groups)
    accuracy: float | None
    macro_f1: float | None
    test_clips: int | None
    # openset.json (at the shipped threshold)
    known_rejected: float | None  # share of known test clips turned away
    wild_seconds_flagged: float | None  # share of the wild videos' seconds flagged as none of the known actions
    wild_videos: int | None  # how many wild videos (other actions) that share is of
    others_flagged: float | None  # clips of other actions the score never learned from, flagged (left out in turn)
    other_classes: int | None  # how many other actions that was measured on
    # benchmark.json (one clip, batch 1)
    onnx_ms: float | None  # ONNX Runtime, as the app serves
    keras_ms: float | None  # TensorFlow
    dir_bytes: int | None  # the whole model directory on disk
    cpus: int | None  # cores of the machine measured on
    # timeline.json (montages of test-group clips)
    segment_f1: float | None
    boundary_error_s: float | None

    @property
    def main(self) -> bool:
        return self.name in MAIN

    @property
    def encoder_text(self) -> str:
        """"all 16 MBConv blocks of EfficientNet-Lite0", "the first 8 of the 16 ..." or "" without encoder."""
        if not self.encoder:
            return ""
        name = ENCODER_NAMES.get(self.encoder, self.encoder)
        if self.encoder_blocks >= self.encoder_all_blocks:
            return f"all {self.encoder_all_blocks} MBConv blocks of {name}"
        return f"the first {self.encoder_blocks} of the {self.encoder_all_blocks} MBConv blocks of {name}"


def _number(data: dict | None, *keys: str) -> float | None:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return float(data) if isinstance(data, (int, float)) else None


def _openset(directory: Path) -> dict | None:
    try:
        return json.loads((directory / OPENSET_REPORT).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _all_blocks(encoder: str) -> int:
    if not encoder:
        return 0
    from har.models.backbone import num_blocks  # Keras: only when an encoder is named

    return num_blocks(encoder)


def model_facts(record: ModelRecord) -> ModelFacts | None:
    """The facts of one directory, or None when it has no readable ``config.json``."""
    cfg = record.config
    if cfg is None:
        return None
    window_s, hop_s = settings(cfg)
    m, b, t, o = record.metrics, record.benchmark, record.timeline, _openset(record.directory)
    groups = {s: len(cfg.split.get(s, [])) // max(len(cfg.classes), 1) for s in ("train", "validation", "test")}
    return ModelFacts(
        name=record.name, label=record.label, retrain=retrain_command(record.directory),
        classes=tuple(cfg.classes), frames=cfg.frames, size=cfg.size, encoder=cfg.encoder,
        encoder_blocks=cfg.encoder_blocks, encoder_all_blocks=_all_blocks(cfg.encoder),
        uncertain_below=cfg.uncertain_below, keep=_number(cfg.openset, "keep"), groups=groups,
        refit=record.refit_history is not None, window_s=window_s, hop_s=hop_s,
        accuracy=_number(m, "accuracy"), macro_f1=_number(m, "macro_f1"),
        test_clips=int(m["clips"]) if m and isinstance(m.get("clips"), int) else None,
        known_rejected=_number(o, "operating_point", "known_rejected"),
        wild_seconds_flagged=_number(o, "operating_point", "wild_seconds_flagged"),
        wild_videos=len(o["wild"]["videos"]) if o and isinstance(o.get("wild", {}).get("videos"), list) else None,
        others_flagged=_number(o, "other_actions", "mean", "flagged"),
        other_classes=len(o["other_actions"]["classes"]) if o and isinstance(
            o.get("other_actions", {}).get("classes"), list) else None,
        onnx_ms=_number(b, "onnx_forward_ms"), keras_ms=_number(b, "forward_ms"),
        dir_bytes=int(b["dir_bytes"]) if b and isinstance(b.get("dir_bytes"), int) else None,
        cpus=int(b["cpus"]) if b and isinstance(b.get("cpus"), int) else None,
        segment_f1=_number(t, "f1"), boundary_error_s=_number(t, "mean_boundary_error_s"),
    )


def all_facts(records: Sequence[ModelRecord]) -> list[ModelFacts]:
    """The facts of every readable directory, in the records' order."""
    return [f for f in map(model_facts, records) if f is not None]


# ---- formatting shared by the pages -------------------------------------------------------------------------------

def percent(share: float | None, digits: int = 1) -> str:
    """0.9455 -> "94.5 %" (a trailing .0 dropped: 0.1 -> "10 %"); None -> "not measured"."""
    if share is None:
        return "not measured"
    text = f"{100 * share:.{digits}f}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} %"


def number(value: float | None, spec: str = ".2f") -> str:
    """``value`` in format ``spec``; None -> "not measured"."""
    return "not measured" if value is None else format(value, spec)


def milliseconds(value: float) -> str:
    """43.39 -> "43 ms", 3.49 -> "3.5 ms"."""
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def seconds(value: float) -> str:
    """2.0 -> "2-second", 7.24 -> "7.24-second"."""
    return f"{value:g}-second"


def joined(values: Sequence[str]) -> str:
    """["a"] -> "a"; ["a", "b"] -> "a / b"."""
    return " / ".join(values)


def count(n: int) -> str:
    """6 -> "six": small counts in words, as prose writes them."""
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    return words[n] if 0 <= n < len(words) else str(n)


def wrapped(markdown: str, width: int = 116) -> str:
    """Markdown with its prose paragraphs and list items re-wrapped to ``width``; tables and code blocks kept."""
    out = []
    for block in markdown.strip().split("\n\n"):
        if block.startswith(("|", "```")):
            out.append(block)
            continue
        items: list[str] = []
        for line in block.splitlines():
            if line.startswith("- ") or not items:
                items.append(line)
            else:
                items[-1] += " " + line.strip()
        out.append("\n".join(textwrap.fill(" ".join(item.split()), width, break_on_hyphens=False,
                                            subsequent_indent="  " if item.startswith("- ") else "")
                             for item in items))
    return "\n\n".join(out)


def retrain_block(facts: Sequence[ModelFacts]) -> str:
    """A bash block with the command that trains each shipped model again."""
    return "```bash\n" + "\n".join(f.retrain for f in facts if f.main) + "\n```"


def results_table(facts: Sequence[ModelFacts]) -> str:
    """README's results: one Markdown row per model directory, the shipped ones first and in bold."""
    rows = ["| model | test accuracy | macro-F1 | test clips | model directory | one clip, ONNX Runtime (TensorFlow) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for f in sorted(facts, key=lambda f: not f.main):
        label = f"**{f.label}**" if f.main else f.label
        size = f"{f.dir_bytes / 1e6:.1f} MB" if f.dir_bytes is not None else "not measured"
        speed = (f"{milliseconds(f.onnx_ms)} ({milliseconds(f.keras_ms)})"
                 if f.onnx_ms is not None and f.keras_ms is not None else "not measured")
        rows.append(f"| {label} | {percent(f.accuracy)} | "
                    + number(f.macro_f1, ".3f")
                    + f" | {f.test_clips if f.test_clips is not None else 'not measured'} | {size} | {speed} |")
    return "\n".join(rows)

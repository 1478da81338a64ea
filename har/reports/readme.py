"""README's results section, written between its markers by ``python -m har docs`` from :mod:`har.reports.facts`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from har.reports.facts import ModelFacts, count, joined, number, percent, results_table, seconds, wrapped

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- results -->", "<!-- /results -->"


def _same(main: Sequence[ModelFacts], value) -> str:
    """One value when every shipped model has it, else "a / b" in the models' order."""
    values = [value(f) for f in main]
    return values[0] if len(set(values)) == 1 else joined(values)


def _others(main: Sequence[ModelFacts]) -> str:
    """How many clips of other actions the score never learned from it flags, each model, where measured."""
    if any(f.others_flagged is None for f in main):
        return ""
    classes = _same(main, lambda f: str(f.other_classes))
    return (f" {joined([percent(f.others_flagged, 0) for f in main])} of clips of other actions it never learned "
            f"from ({', '.join(f.label for f in main)}; each of {classes} other actions left out in turn);")


def results_section(facts: Sequence[ModelFacts]) -> str:
    """The Markdown between :data:`START` and :data:`END` (both excluded)."""
    main = [f for f in facts if f.main]
    if not main:
        return "No trained model is stored in `models/`: train one ([docs/training.md](docs/training.md)).\n"
    ref, labels = main[0], joined([f.label for f in main])
    flagged = _same(main, lambda f: percent(f.wild_seconds_flagged, 0))
    return f"""
Both shipped models see each of {ref.frames} frames ({ref.size}x{ref.size} px) through the same frozen ImageNet
encoder ({_same(main, lambda f: f.encoder_text or "none")}) and differ only in how they model time: **LRCN** runs an
LSTM over per-frame vectors, **ConvLSTM** a convolutional LSTM over the feature maps. Scored on
{ref.groups['test'] * len(ref.classes)} UCF101 groups ({ref.test_clips} clips) never seen in training or model
selection (split by group, not by clip: clips of one group share actor and place, so a clip split leaks); one
clip's forward pass on a {_same(main, lambda f: str(f.cpus))}-core CPU as the app serves it (ONNX Runtime),
TensorFlow in brackets:

{results_table(facts)}

The models know {count(len(ref.classes))} actions only ({', '.join(ref.classes)}); a video of anything else is answered
*none of the known actions* when its familiarity is low (the model's own evidence plus how much the video looks
like the training clips and unlike clips of other actions, [docs/openset.md](docs/openset.md): {flagged} of the seconds
of {_same(main, lambda f: str(f.wild_videos))} web videos of other actions flagged;{_others(main)} of the known test
clips,
{", ".join(f"the {f.label} turned away {percent(f.known_rejected)}" for f in main)}) or when the top probability is
under {_same(main, lambda f: percent(f.uncertain_below, 0))}. The timeline slides a
{_same(main, lambda f: seconds(f.window_s))} window every {_same(main, lambda f: f"{f.hop_s:g}")} s and decodes
segments with a Viterbi decoder (segment F1 {joined([number(f.segment_f1) for f in main])} for {labels} on montages
of test clips, boundaries within {joined([number(f.boundary_error_s) for f in main])} s). Each shipped model is
trained again by one command ([docs/training.md](docs/training.md)):

```bash
{chr(10).join(f.retrain for f in main)}
```
"""


def with_results(text: str, facts: Sequence[ModelFacts]) -> str:
    """``text`` (README.md) with its results section written from ``facts``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"README.md needs exactly one {START} ... {END} pair")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{wrapped(results_section(facts))}\n{END}{tail}"

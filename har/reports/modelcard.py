"""The model card: what the shipped models do, on what data and protocol, what they cannot do, how to retrain.

One text for the app's About tab and for ``docs/model-card.md`` (written by ``python -m har docs``). Every fact in
it (classes, frames, frame size, encoder, timeline window, thresholds, rejection rates, the split's groups, the
retraining command) is formatted from :mod:`har.reports.facts`, read from the stored model directories.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from har import __version__
from har.reports.dashboard import split_table
from har.reports.facts import ModelFacts, all_facts, count, joined, percent, retrain_block, seconds, wrapped
from har.reports.records import MAIN, ModelRecord

DOC = Path(__file__).resolve().parents[2] / "docs" / "model-card.md"


def reference(records: Sequence[ModelRecord]) -> ModelRecord | None:
    """The first shipped model with a readable config: the one whose split table the card shows."""
    return next((r for r in records if r.name in MAIN and r.config), None)


def _each(main: Sequence[ModelFacts], value) -> str:
    """"the LRCN 4.5 %, the ConvLSTM 10 %": ``value(facts)`` of each shipped model after its name."""
    return ", ".join(f"the {f.label} {value(f)}" for f in main)


def _what_it_does(main: Sequence[ModelFacts], classes_fallback: Sequence[str]) -> str:
    if not main:
        return (f"**What it does.** Two video classifiers name which of these actions a video shows: "
                f"**{', '.join(classes_fallback)}**. No trained model is stored in `models/` on this server, so "
                "the facts of the shipped models (frames, encoder, window) are not shown here.")
    ref = main[0]
    encoders = sorted({f.encoder_text for f in main})
    encoder = (f"the same frozen encoder, {encoders[0]}, a small image network trained on ImageNet (its weights, "
               "Apache-2.0, ship inside the models; our training does not change them)"
               if len(encoders) == 1 and encoders[0] else
               f"its own encoder ({_each(main, lambda f: f.encoder_text or 'trained from scratch')})")
    windows = sorted({(f.window_s, f.hop_s) for f in main})
    window = (f"slide a {seconds(windows[0][0])} window every {windows[0][1]:g} s" if len(windows) == 1 else
              f"slide a window ({_each(main, lambda f: f'{f.window_s:g} s every {f.hop_s:g} s')})")
    return f"""**What it does.** Two video classifiers name which of {count(len(ref.classes))} actions a video shows:
**{', '.join(ref.classes)}**. Both read {ref.frames} RGB frames of {ref.size}x{ref.size} pixels taken at equal
intervals over a clip, and each sees every frame through {encoder}. **LRCN** pools each frame's features to one
vector, sets it beside its change since the previous frame and runs an LSTM over the sequence; **ConvLSTM** runs a
convolutional LSTM over the frames' feature maps, keeping where things are. The two differ only in how they model
time. Over a longer video they {window}, and a decoder turns the windows' probabilities into segments."""


def _protocol(main: Sequence[ModelFacts]) -> str:
    ref = main[0] if main else None
    groups = (f"per class, seeded, {ref.groups['train']} groups train, {ref.groups['validation']} validate "
              f"(early stopping and model choice) and {ref.groups['test']} test" if ref else
              "per class, seeded, groups are dealt into training, validation and test")
    refit = (" Once validation had set the length of training, the shipped models were trained again from scratch "
             "on the training and validation groups together (the test groups stay unseen)."
             if any(f.refit for f in main) else "")
    return f"""**Protocol.** All clips of one UCF101 group are cut from one long video (same actor, same place), so
whole groups go to one side of a split: {groups}.{refit} The test numbers on *Compare models* are on groups never
seen before. Groups g01–g07 (UCF101's official split-1 test groups) are withheld from us entirely and used to score
the shipped models from outside. The groups of each split (from the model's `config.json`):"""


def _cannot(main: Sequence[ModelFacts]) -> str:
    ref = main[0] if main else None
    threshold = joined(sorted({percent(f.uncertain_below, 0) for f in main})) if main else "the model's threshold"
    keep = joined(sorted({percent(f.keep, 0) for f in main if f.keep is not None}))
    turned = (f" (the threshold is set to keep {keep} of known clips from new groups; of the test clips, "
              f"{_each(main, lambda f: f'turned away {percent(f.known_rejected)}')})" if keep else "")
    detail = (f"{ref.size}x{ref.size} pixels and {ref.frames} frames per window lose small objects, fast motion and "
              "hands" if ref else "a few small frames per window lose small objects, fast motion and hands")
    return f"""**What the models cannot do.**
- Name anything but these actions. A video of something else still gets a probability for each; the app says
  *none of the known actions* when the model's familiarity (its own evidence plus how much the video looks like
  the training clips, docs/openset.md) is under its threshold, or when the best probability is under {threshold}.
  Some other actions still pass as known (a golf-club advert, for most of its length) and some known clips are
  turned away{turned}.
- See detail: {detail}.
- Generalise far from UCF101: amateur YouTube footage from around 2007, one action per clip, mostly filmed from
  the side or the stands. New viewpoints, cameras, crops (portrait phone video) and settings cost accuracy.
- Tell who or where: there is no localisation, tracking or identity, and several actions at once get one label.
- Decide anything about people. This is a teaching and comparison demo, not a monitoring tool."""


def sections(records: Sequence[ModelRecord], classes_fallback: Sequence[str] = ()) -> tuple[str, str]:
    """The card's Markdown before and after the table of each split's groups
    (:func:`har.reports.dashboard.split_table`). ``classes_fallback``: the classes named when no model is stored."""
    main = [f for f in all_facts(records) if f.main]
    classes = count(len(main[0].classes if main else classes_fallback))
    before = f"""
## Model card

{_what_it_does(main, classes_fallback)}

**Data.** UCF101 (Soomro, Zamir and Shah, *UCF101: A Dataset of 101 Human Actions Classes From Videos in The
Wild*, CRCV-TR-12-01, 2012), {classes} of its classes. UCF101 is distributed by the University of Central
Florida for research use; its clips come from YouTube and remain their uploaders'. The example clips on the
*Recognize* tab are clips of test groups, trimmed to a few seconds; they were picked among clips both models get
right, so they show how the app works, not how often it is right (that is *Compare models*).

{_protocol(main)}
"""
    retrain = (f"""**How to retrain.** Each command trains a shipped model again with the recipe its `config.json`
records (data beside the repository, `../shared/data/ucf101-6`):

{retrain_block(main)}

Each run writes `model.keras`, `config.json`, `history.csv` and `metrics.json`; this app reads them at start-up.
`python -m har evaluate --model lrcn --data DIR --json` scores a model on any folder-per-class dataset."""
               if main else "**How to retrain.** See `docs/training.md` in the repository.")
    after = f"""
{_cannot(main)}

{retrain}

**How to deploy.** Push the repository to a Hugging Face Space (Gradio SDK; the README's front matter configures
it) or run `pip install -r requirements.txt && python app.py` on any machine; see `docs/deploy.md` in the repository.
HAR Studio {__version__}.
"""
    return wrapped(before) + "\n", wrapped(after) + "\n"


def markdown(records: Sequence[ModelRecord]) -> str:
    """The whole card as one Markdown page, the split table included (``docs/model-card.md``)."""
    before, after = sections(records)
    ref = reference(records)
    table = split_table(ref)
    rows = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    rows += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    title = f"*{ref.label}: groups per split*\n\n" if ref is not None else ""
    return (f"<!-- written by `python -m har docs` from har/reports/modelcard.py: edit that, not this -->\n\n"
            f"{before}\n{title}" + "\n".join(rows) + f"\n\n{after}")

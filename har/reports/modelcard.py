"""The model card: what the shipped models do, on what data and protocol, what they cannot do, how to retrain.

One text for the app's About tab and for ``docs/model-card.md`` (written by ``python -m har docs``; a test checks
that the file is what this module writes, so the two never disagree). The facts that change with a retrain
(classes, frames, frame size, window, threshold, the refit, each split's groups) are read from the stored models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from har import __version__
from har.reports.dashboard import MAIN, ModelRecord, refit_shipped, split_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "model-card.md"


def reference(records: Sequence[ModelRecord]) -> ModelRecord | None:
    """The first shipped model with a readable config: the one whose facts the card states."""
    return next((r for r in records if r.name in MAIN and r.config), None)


def sections(records: Sequence[ModelRecord], classes_fallback: Sequence[str] = ()) -> tuple[str, str]:
    """The card's Markdown before and after the table of each split's groups
    (:func:`har.reports.dashboard.split_table`)."""
    ref = reference(records)
    cfg = ref.config if ref else None
    classes = ", ".join(cfg.classes if cfg else classes_fallback)
    frames, size = (cfg.frames, cfg.size) if cfg else (20, 64)
    window = f"{cfg.window_s:g}" if cfg else "7"
    threshold = f"{cfg.uncertain_below:.0%}" if cfg else "50%"
    refit_note = (" Once validation had set the length of training, the shipped models were trained again from "
                  "scratch on the training and validation groups together (the test groups stay unseen)."
                  if refit_shipped(records) else "")
    before = f"""
## Model card

**What it does.** Two video classifiers name which of six actions a video shows: **{classes}**. Both read
{frames} RGB frames of {size}x{size} pixels taken at equal intervals over a clip, and both see each frame through
the same encoder: the first four stages of EfficientNet-Lite0, a small image network trained on ImageNet (its
weights, Apache-2.0, ship inside the models; they are not changed by our training). **LRCN** pools each frame's
features to one vector, sets it beside its change since the previous frame and runs an LSTM over the sequence;
**ConvLSTM** runs a convolutional LSTM over the frames' feature maps, keeping where things are. The two differ
only in how they model time. Over a longer video they slide a {window}-second window (the median length of the
training clips) every second and report segments.

**Data.** UCF101 (Soomro, Zamir and Shah, *UCF101: A Dataset of 101 Human Actions Classes From Videos in The
Wild*, CRCV-TR-12-01, 2012), six classes, groups g08–g25: 529 clips. UCF101 is distributed by the University of
Central Florida for research use; its clips come from YouTube and remain their uploaders'. The example clips on
the *Recognize* tab are six of them, from test groups, some trimmed to 4 s; they were picked among clips both
models get right, so they show how the app works, not how often it is right (that is *Compare models*).

**Protocol.** All clips of one UCF101 group are cut from one long video (same actor, same place), so whole groups
go to one side of a split: per class, seeded, about 60 % of groups train, 15 % validate (early stopping and model
choice), 20 % test.{refit_note} The test numbers on *Compare models* are on groups never seen before. Groups g01–g07
(UCF101's official split-1 test groups) are withheld from us entirely and used to score the shipped models from
outside. The groups of each split (from the model's `config.json`):
"""
    after = f"""
**What the models cannot do.**
- Name anything but these six actions. A video of something else still gets six probabilities; the app says
  *none of the known actions* when the model's familiarity (its own evidence plus how much the video looks like
  the training clips, docs/openset.md) is under its threshold, or when the best probability is under {threshold}.
  Some other actions still pass as known (a golf-club advert, for most of its length) and some known clips are
  turned away (the threshold is set to keep 95 % of known clips from new groups; of the test clips the LRCN
  turned away 4.5 %, the ConvLSTM 10 %).
- See detail: {size}x{size} pixels and {frames} frames per window lose small objects, fast motion and hands.
- Generalise far from UCF101: amateur YouTube footage from around 2007, one action per clip, mostly filmed from
  the side or the stands. New viewpoints, cameras, crops (portrait phone video) and settings cost accuracy.
- Tell who or where: there is no localisation, tracking or identity, and several actions at once get one label.
- Decide anything about people. This is a teaching and comparison demo, not a monitoring tool.

**How to retrain.** With the data beside the repository (`../shared/data/ucf101-6`):

```bash
python -m har train --arch lrcn --preset imagenet --refit --data ../shared/data/ucf101-6 --out models/lrcn
python -m har train --arch convlstm --preset imagenet --refit --data ../shared/data/ucf101-6 \\
    --out models/convlstm
python -m har evaluate --model lrcn --data DIR --json      # score on any folder-per-class dataset
```

Each run writes `model.keras`, `config.json`, `history.csv` and `metrics.json`; this app reads them at start-up.

**How to deploy.** Push the repository to a Hugging Face Space (Gradio SDK; the README's front matter configures
it) or run `pip install -r requirements.txt && python app.py` on any machine; see `docs/deploy.md` in the repository.
HAR Studio {__version__}.
"""
    return before.strip() + "\n", after.strip() + "\n"


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

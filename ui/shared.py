"""What the tabs share: the model choices, turning a choice into loaded recognizers, the docs' links, the examples."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from har.settings import settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODELS = {"LRCN": "lrcn", "ConvLSTM": "convlstm"}  # choice shown -> model directory name
BOTH = "Both, side by side"
CHOICES = [*MODELS, BOTH]
# One line per architecture for the model choice (what each is, not how well it does: Compare models says that).
MODEL_INFO = ("Both see the frames through the same pretrained image encoder. LRCN: each frame becomes a vector, "
              "an LSTM reads their sequence. ConvLSTM: each frame stays a map, convolutional LSTMs read space and "
              "time together.")


def docs_link(page: str, text: str) -> str:
    """A Markdown link to a page of the docs (``HAR_DOCS_URL``, by default the Space's docs/ folder); without
    a docs address, the page's name in words."""
    base = settings().docs_url
    return f"[{text}]({base}{page})" if base else f"{text} (the docs' {page})"


def error(message: str) -> gr.Error:
    """The error a visitor sees: our message, without a traceback in the log."""
    return gr.Error(message, print_exception=False)


def chosen(model: str, recognizers: dict, missing: dict, choices: list[str] = CHOICES) -> dict:
    """``{choice: Recognizer}`` of a model choice (both models for :data:`BOTH`); a :class:`gr.Error` naming why
    for an unknown choice or a model this server could not load."""
    if model not in choices:
        raise error(f"Unknown model '{model}': choose one of {', '.join(choices)}.")
    wanted = list(MODELS) if model == BOTH else [model]
    absent = [c for c in wanted if c not in recognizers]  # missing, or failed to load
    if absent:
        raise error(" ".join(f"The {c} model is not available on this server: {missing.get(c, '')}"
                             for c in absent))
    return {c: recognizers[c] for c in wanted}


def example_clips() -> dict[str, Path]:
    """One shipped clip per class, ``examples/v_<Class>_gGG_cCC.mp4`` -> ``{Class: path}``."""
    return {p.stem.split("_")[1]: p for p in sorted(EXAMPLES.glob("v_*.mp4"))}

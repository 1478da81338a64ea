"""HAR Studio: human action recognition (LRCN and ConvLSTM) on short clips and long videos.

The public API, for the app, the command line, the benchmarks and outside scripts::

    from har import Recognizer, analyze, annotate, download

    lrcn = Recognizer("lrcn", runtime="auto")        # a shipped model name or a model directory; loads once
    lrcn.classify("clip.mp4").label                   # the whole clip, sampled as in training
    result = analyze("long.mp4", [lrcn, Recognizer("convlstm")])   # timelines of both, one decoding pass
    annotate("long.mp4", "out.mp4", {n: a.timeline for n, a in result.items()})   # H.264 copy with labels
    path = download("https://youtu.be/...", "downloads/")          # a link, through the link guard

* :class:`Recognizer` -> :class:`ClipPrediction` (``classify``) and :class:`Timeline` (``timeline``: window,
  per-step and per-second probabilities, :class:`Segment` s); :func:`analyze` -> ``{name: Analysis}``.
* :data:`UNCERTAIN` is the label of an answer whose top probability is under the model's threshold.
* Errors caused by what a user gave are :class:`HarError` subclasses with a message a user can act on.

``import har`` stays cheap: these names are loaded on first use (the command line prints its messages before
TensorFlow or yt-dlp are imported). The library never imports gradio. One module per job:

========================  ===========================================================================
``video``                 decode and sample (one sequential pass, no seeks)
``data``                  index a folder per class, split by group, cache frames
``models``, ``backbone``  build the networks; the ImageNet frame encoder
``train``, ``evaluate``   fit and log (``checkpoints``: resume state); score a model directory
``export``                the ONNX copy of a model directory
``surgery``, ``backends`` graph surgery for serving; the runtimes a model is served on
``recognizer``            a loaded model: classify, timeline
``timeline``              windows, the one decoding pass, the timeline's defaults
``segments``              probabilities per step, the Viterbi decoder into segments
``analysis``              several models, one call
``annotation``            the annotated H.264 copy
``fetch``                 download links safely
``batch``, ``report``     test many videos (``python -m har batch``); their summary
``turns``, ``disk``       the app's fair turns at the recognizers; its cache's size cap
``dashboard``             stored logs -> tables and figures
``modelcard``             the model card (About tab, docs/model-card.md)
========================  ===========================================================================
"""

from __future__ import annotations

import importlib

from har.errors import DatasetError, FetchError, HarError, ModelError, VideoError

__version__ = "0.1.0"

_LAZY = {
    "Recognizer": "har.recognizer",
    "analyze": "har.analysis",
    "annotate": "har.annotation",
    "download": "har.fetch",
    "fetched": "har.fetch",
    "Analysis": "har.results",
    "ClipPrediction": "har.results",
    "Score": "har.results",
    "Segment": "har.results",
    "Timeline": "har.results",
    "UNCERTAIN": "har.results",
}

__all__ = ["DatasetError", "FetchError", "HarError", "ModelError", "VideoError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'har' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

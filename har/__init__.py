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
TensorFlow or yt-dlp are imported). The library never imports gradio. A sub-package per job:

==============  =====================================================================================
``media``       decode and sample (one sequential pass, no seeks), ffmpeg, the annotated H.264 copy
``data``        index a folder per class, split by group, cache frames and encoder features, montages
``models``      build the networks; the ImageNet frame encoder and its weights
``train``       fit a model directory and log it; resume state; several machines
``serve``       a loaded model (``Recognizer``): runtimes, graph surgery, ONNX copy, timelines, results
``openset``     none of the known actions: the familiarity score, its held-out threshold, its report
``evaluation``  score a model directory on its test groups; explain its answers
``links``       download links safely (yt-dlp behind the link guard)
``batch``       test many videos (``python -m har batch``); their summary
``reports``     stored logs -> tables, figures and the model card
``teaching``    teach a model new actions from a few example clips (``har.teach``)
==============  =====================================================================================

At the top: ``errors`` (our exceptions), ``config`` (the typed config saved with each model), ``modeldir`` (a model
directory's files), ``settings`` (every ``HAR_*`` setting, read once), ``progress``, ``cli``.
"""

from __future__ import annotations

import importlib

from har.errors import DatasetError, FetchError, HarError, ModelError, VideoError

__version__ = "0.1.0"

_LAZY = {
    "Recognizer": "har.serve.recognizer",
    "analyze": "har.serve.analysis",
    "annotate": "har.media.annotation",
    "download": "har.links.fetch",
    "fetched": "har.links.fetch",
    "Analysis": "har.serve.results",
    "ClipPrediction": "har.serve.results",
    "Score": "har.serve.results",
    "Segment": "har.serve.results",
    "Timeline": "har.serve.results",
    "UNCERTAIN": "har.serve.results",
    "teach": "har.teaching.api",
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

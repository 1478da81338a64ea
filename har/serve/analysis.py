"""Several models, one call: every recognizer's answer on one video, side by side, from one decoding pass."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from har.media.annotation import annotate
from har.media.limits import check_length
from har.media.video import probe, sample_clip_counted
from har.progress import Progress, scaled, silent
from har.serve.recognizer import Recognizer
from har.serve.results import Analysis, ClipPrediction, Timeline, check_top_k
from har.serve.timeline import scan


def analyze(path: str | os.PathLike, recognizers: Recognizer | Sequence[Recognizer], *, timeline: bool = True,
            annotate_to: str | os.PathLike | None = None, top_k: int = 5, window_s: float | None = None,
            hop_s: float | None = None, penalty: float | None = None,
            progress: Progress | None = None) -> dict[str, Analysis]:
    """Every recognizer on the video at ``path``, side by side: ``{name: Analysis}`` in the given order.

    With ``timeline`` (default), one decoding pass serves all models' windows and whole-clip samples
    (``window_s``, ``hop_s``, ``penalty``: as in :meth:`Recognizer.timeline`). With
    ``annotate_to``, one H.264 MP4 is written there with every model's label drawn on every frame (the timeline's
    current segment, or the clip's label when ``timeline`` is False).
    """
    progress = progress or silent
    recs = [recognizers] if isinstance(recognizers, Recognizer) else list(recognizers)
    assert recs, "analyze needs at least one recognizer"
    names = [r.name for r in recs]
    assert len(set(names)) == len(names), f"recognizer names must differ: {names}"
    p = Path(path)
    share = 0.5 if annotate_to else 1.0  # progress share of the analysis (the rest: the annotated copy)
    sub = scaled(progress, 0.0, share)
    results: list[Timeline | ClipPrediction]
    if timeline:
        results = scan(p, recs, window_s, hop_s, top_k, sub, penalty)
    else:
        results = _classify_all(p, recs, top_k, sub)
    out_path = None
    if annotate_to:
        out_path = annotate(p, annotate_to, dict(zip(names, results, strict=True)), scaled(progress, share, 1.0))
    return {
        r.name: Analysis(str(path), r.name, res.clip if isinstance(res, Timeline) else res,
                         res if isinstance(res, Timeline) else None, out_path)
        for r, res in zip(recs, results, strict=True)
    }


def _classify_all(path: Path, recs: Sequence[Recognizer], top_k: int, progress: Progress) -> list[ClipPrediction]:
    """Each recognizer's whole-clip answer; models that sample alike share one sampling pass."""
    check_top_k(top_k)
    info = probe(path)
    check_length(path, info.duration_s)
    # (frames, size) -> ((frames, size, size, 3) uint8, frames that really decode)
    sampled: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
    out = []
    for i, r in enumerate(recs):
        key = (r.config.frames, r.config.size)
        if key not in sampled:
            progress(i / len(recs), f"{r.name}: sampling {key[0]} frames")
            sampled[key] = sample_clip_counted(path, *key)
        clip, decoded = sampled[key]
        out.append(r.prediction(r.probabilities(clip[None])[0], top_k).read(decoded / (info.fps or 25.0),
                                                                             info.duration_s))
    progress(1.0, "classified")
    return out

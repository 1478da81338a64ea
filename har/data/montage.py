"""Montages for measuring timelines: clips of several classes cut to random lengths and put end to end, with the
true segments, and the scores of a timeline's segments against them.

A montage is what a real upload often is (a highlight reel, an advert): a cut every few seconds. :func:`build`
takes ``pieces`` clips of random classes (seeded) from the given groups only, cuts each to a random span of
``min_s``..``max_s`` seconds (the whole clip when it is shorter), and writes them end to end at one size and frame
rate (MJPG AVI, every frame resampled by time). No two neighbours share a class, so every cut is a boundary.

:func:`score` matches predicted segments to true ones one to one (same label, IoU >= 0.5, best IoU first) and
gives precision, recall and F1, the mean distance of each true boundary to the nearest predicted one, and the
recall of pieces by length.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from har.data.dataset import Clip
from har.media.video import open_video, probe

SIZE = (320, 240)  # UCF101's frame size; other clips are resized to it
FPS = 25.0


@dataclass(frozen=True)
class TrueSegment:
    start_s: float
    end_s: float
    label: str
    source: str  # the clip's file name


def build(clips: Sequence[Clip], out: str | os.PathLike, seed: int, pieces: int = 6, min_s: float = 2.0,
          max_s: float = 10.0) -> list[TrueSegment]:
    """Write a montage of ``pieces`` random pieces of ``clips`` to ``out``; returns its true segments."""
    rng = random.Random(seed)
    by_class: dict[str, list[Clip]] = {}
    for c in clips:
        by_class.setdefault(c.label, []).append(c)
    labels = sorted(by_class)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    truth: list[TrueSegment] = []
    t = 0.0
    try:
        for _ in range(pieces):
            label = rng.choice([x for x in labels if not truth or x != truth[-1].label])
            clip = rng.choice(by_class[label])
            length = rng.uniform(min_s, max_s)
            frames = _piece(clip.path, length, rng)
            for f in frames:
                writer.write(f)
            seconds = len(frames) / FPS
            truth.append(TrueSegment(round(t, 3), round(t + seconds, 3), label, clip.path.name))
            t += seconds
    finally:
        writer.release()
    return truth


def _piece(path: Path, length_s: float, rng: random.Random) -> list[np.ndarray]:
    """Frames of a random span of ``length_s`` seconds of the clip (all of it when shorter), at :data:`FPS`."""
    info = probe(path)
    fps = info.fps or FPS
    cap = open_video(path)
    source = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            source.append(img if (img.shape[1], img.shape[0]) == SIZE
                          else cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA))
    finally:
        cap.release()
    duration = len(source) / fps
    span = min(length_s, duration)
    start = rng.uniform(0.0, duration - span)
    n = max(1, int(round(span * FPS)))
    return [source[min(int((start + i / FPS) * fps), len(source) - 1)] for i in range(n)]


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def score(truth: Sequence[TrueSegment], predicted: Sequence[Any], threshold: float = 0.5) -> dict[str, Any]:
    """Segment scores of ``predicted`` (objects with ``start_s``, ``end_s``, ``label``) against ``truth``.

    ``matched``: true segments matched one to one by a predicted segment of the same label with IoU >=
    ``threshold`` (best pairs first); ``boundary_errors``: for each cut between two true segments, the distance
    in seconds to the nearest boundary between two predicted segments (the video's length when there is none).
    """
    pairs = sorted(((iou((t.start_s, t.end_s), (p.start_s, p.end_s)), i, j)
                    for i, t in enumerate(truth) for j, p in enumerate(predicted) if p.label == t.label),
                   reverse=True)
    used_t, used_p = set(), set()
    for v, i, j in pairs:
        if v >= threshold and i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
    cuts = [t.end_s for t in truth[:-1]]
    found = [p.end_s for p in predicted[:-1]]
    length = truth[-1].end_s if truth else 0.0
    errors = [min((abs(c - f) for f in found), default=length) for c in cuts]
    return {"true": len(truth), "predicted": len(predicted), "matched": len(used_t),
            "found": [i in used_t for i in range(len(truth))],
            "lengths": [round(t.end_s - t.start_s, 3) for t in truth], "boundary_errors": errors}


def summarize(scores: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Pooled over montages: precision, recall, F1 at IoU 0.5, mean boundary error, recall of 2-3 s pieces."""
    matched = sum(s["matched"] for s in scores)
    true = sum(s["true"] for s in scores)
    pred = sum(s["predicted"] for s in scores)
    precision = matched / pred if pred else 0.0
    recall = matched / true if true else 0.0
    errors = [e for s in scores for e in s["boundary_errors"]]
    short = [f for s in scores for f, n in zip(s["found"], s["lengths"], strict=True) if 2.0 <= n < 3.0]
    return {
        "montages": len(scores), "segments": true, "predicted": pred,
        "precision": round(precision, 4), "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "mean_boundary_error_s": round(float(np.mean(errors)), 3) if errors else 0.0,
        "short_pieces": len(short), "short_recall": round(sum(short) / len(short), 4) if short else 0.0,
    }

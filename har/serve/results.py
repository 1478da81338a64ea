"""What recognition returns: a clip's class probabilities, a long video's timeline and segments, one model's view.

Every result names the model that made it (``model``: the recognizer's name, e.g. ``"lrcn"``), carries the class
names in output order, and turns into plain JSON with ``to_dict()`` (the CLI's ``--json``, the app's JSON file).
A top probability under the model's ``uncertain_below`` reads :data:`UNCERTAIN`: the models know six actions only,
and anything else must not look like an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from har.errors import HarError

UNCERTAIN = "none of the known actions"
READ_ENOUGH = 0.9  # a result from less than this share of a video's length (and >= 0.5 s short) says so


def check_top_k(top_k: int) -> int:
    """``top_k`` as an int when it is a whole number of at least 1; a :class:`HarError` otherwise."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise HarError(f"top-k must be a whole number of at least 1, not {top_k!r}.")
    return int(top_k)


@dataclass(frozen=True)
class Score:
    label: str
    score: float  # softmax probability in [0, 1]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(float(self.score), 4)}


@dataclass(frozen=True)
class ClipPrediction:
    """Class probabilities for a whole clip, sampled as in training."""

    model: str  # recognizer name, e.g. "lrcn"
    classes: tuple[str, ...]
    probs: np.ndarray  # (classes,) float32, sums to 1
    uncertain_below: float  # threshold on the top probability
    top_k: int = 5
    read_s: float | None = None  # seconds of video that really decoded (frames / fps); None: not measured
    length_s: float | None = None  # the video's length as its container says; None when it does not say
    # How much the clip looks like the training clips (har.openset.score; higher = more familiar) and the threshold
    # under
    # which it is "none of the known actions"; None for a model without an open-set score (top probability only).
    familiarity: float | None = None
    familiar_above: float | None = None

    @property
    def top(self) -> tuple[Score, ...]:
        """The ``top_k`` most probable classes, best first."""
        order = np.argsort(-self.probs, kind="stable")[: self.top_k]
        return tuple(Score(self.classes[i], float(self.probs[i])) for i in order)

    @property
    def unfamiliar(self) -> bool:
        """True when the open-set score says the clip looks like none of the training clips."""
        return self.familiarity is not None and self.familiar_above is not None and \
            self.familiarity < self.familiar_above

    @property
    def uncertain(self) -> bool:
        """Unfamiliar (open set), or a top probability under ``uncertain_below``."""
        return self.unfamiliar or float(self.probs.max()) < self.uncertain_below

    @property
    def closest(self) -> str:
        """The most probable class, whatever the threshold says (the hint beside "none of the known actions")."""
        return self.classes[int(self.probs.argmax())]

    @property
    def label(self) -> str:
        """The best class, or :data:`UNCERTAIN` when its probability is under the threshold."""
        return UNCERTAIN if self.uncertain else self.classes[int(self.probs.argmax())]

    @property
    def partly_read(self) -> bool:
        """True when much less than the whole video decoded (a truncated or partly broken file): under
        :data:`READ_ENOUGH` of the container's length and at least half a second short of it."""
        if self.read_s is None or not self.length_s:
            return False
        return self.read_s < READ_ENOUGH * self.length_s and self.length_s - self.read_s >= 0.5

    def read_warning(self) -> str | None:
        """The warning, in words, when the answer comes from only part of the video (:attr:`partly_read`)."""
        if not self.partly_read:
            return None
        return (f"Only {self.read_s:.1f} s of this video's {self.length_s:.1f} s could be read "
                f"({self.read_s / self.length_s:.0%}): the file is probably truncated or damaged, and the answer is "
                "about that part only.")

    def read(self, read_s: float, length_s: float | None) -> ClipPrediction:
        """This prediction, saying how many seconds of a video of ``length_s`` (its container's; 0 or None:
        unknown) it was made from."""
        return replace(self, read_s=float(read_s), length_s=float(length_s) if length_s else None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "top": [s.to_dict() for s in self.top], "uncertain": self.uncertain,
                "label": self.label, "uncertain_below": self.uncertain_below,
                "familiarity": None if self.familiarity is None else round(float(self.familiarity), 4),
                "familiar_above": None if self.familiar_above is None else round(float(self.familiar_above), 4),
                "open_set": "top probability only" if self.familiarity is None else "familiarity",
                "read_s": None if self.read_s is None else round(self.read_s, 2),
                "length_s": None if self.length_s is None else round(self.length_s, 2)}


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    label: str  # a class, or UNCERTAIN
    score: float  # mean per-step probability of the label (of the best class when UNCERTAIN)

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2), "label": self.label,
                "score": round(float(self.score), 4)}


@dataclass(frozen=True)
class Timeline:
    """What a model sees over a long video: window scores, probabilities per second and per step (the decoder's
    resolution: the hop, at most a second), what the decoder took as unknown, and the segments."""

    model: str
    clip: ClipPrediction  # the whole video sampled as in training, from the same decoding pass
    duration_s: float  # frames / fps
    fps: float
    frame_count: int  # frames that really decode
    window_s: float  # window length used (the video's length when shorter)
    hop_s: float
    window_starts: np.ndarray  # (windows,) seconds
    window_probs: np.ndarray  # (windows, classes) float32
    seconds: np.ndarray  # (S,) start of each second: 0, 1, ..., ceil(duration) - 1
    probs: np.ndarray  # (S, classes) float32 per-second class probabilities
    step_s: float  # the decoder's step
    steps: np.ndarray  # (T,) start of each step: 0, step_s, 2 * step_s, ... (the last step may be partial)
    step_probs: np.ndarray  # (T, classes) float32 per-step class probabilities
    unknown: np.ndarray  # (T,) float32 u in [0, 1]: how likely each step shows none of the known actions
    penalty: float  # the decoder's log-space cost per change of state
    segments: tuple[Segment, ...] = field(default=())
    # (windows,) each window's familiarity (har.openset.score); None for a model without an open-set score or served
    # whole per window (still loading)
    window_familiarity: np.ndarray | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.clip.classes

    def probs_at(self, t: float) -> np.ndarray:
        """``(classes,)`` the class probabilities of the step at time ``t``."""
        return self.step_probs[min(max(int(t / self.step_s + 1e-9), 0), len(self.steps) - 1)]

    def label_at(self, t: float) -> tuple[str, float]:
        """``(label, probability)`` shown at time ``t``: the segment's label, that step's probability of it."""
        p = self.probs_at(t)
        seg = next((s for s in self.segments if s.start_s <= t < s.end_s), self.segments[-1])
        if seg.label == UNCERTAIN:
            return UNCERTAIN, float(p.max())
        return seg.label, float(p[self.classes.index(seg.label)])

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.clip.to_dict(),
            "duration_s": round(self.duration_s, 3),
            "window_s": round(self.window_s, 3),
            "hop_s": round(self.hop_s, 3),
            "windows": len(self.window_starts),
            "segments": [s.to_dict() for s in self.segments],
            "step_s": round(self.step_s, 3),
            "switch_penalty": round(self.penalty, 3),
            "per_second": {"t": [int(t) for t in self.seconds], "classes": list(self.classes),
                           "probs": np.round(self.probs.astype(float), 4).tolist()},
            "per_step": {"t": np.round(self.steps, 3).tolist(), "classes": list(self.classes),
                         "probs": np.round(self.step_probs.astype(float), 4).tolist(),
                         "unknown": np.round(self.unknown.astype(float), 4).tolist()},
            "window_familiarity": None if self.window_familiarity is None
            else np.round(self.window_familiarity.astype(float), 4).tolist(),
        }


@dataclass(frozen=True)
class Analysis:
    """One model's view of one video: the clip prediction, the timeline (optional), the annotated copy."""

    input: str
    model: str
    clip: ClipPrediction
    timeline: Timeline | None = None
    annotated: Path | None = None

    @property
    def label(self) -> str:
        return self.clip.label

    @property
    def uncertain(self) -> bool:
        return self.clip.uncertain

    def to_dict(self) -> dict[str, Any]:
        out = {"input": self.input, **(self.timeline or self.clip).to_dict()}
        if self.annotated is not None:
            out["annotated"] = str(self.annotated)
        return out

"""Predict: classify a clip, lay a timeline over a long video, draw the labels onto a browser-playable copy.

A :class:`Recognizer` loads a model directory once (``config.json`` says classes, frames per clip, frame size,
timeline window and uncertainty threshold), compiles the forward pass once, and then serves any number of calls
from any number of threads: it holds no per-call state, and its ``tf.function`` has one input signature
``(None, frames, size, size, 3) uint8``, traced once at warm-up.

* :meth:`Recognizer.classify` samples the whole video as in training (:func:`har.video.sample_clip`).
* :meth:`Recognizer.timeline` slides a window of ``window_s`` seconds by ``hop_s`` over the video. Each window is
  sampled like a training clip: ``frames`` frames at equal intervals ``window_s / frames`` apart. The sample
  times of every window lie on one grid of that step, so overlapping windows share frames: a pass retrieves about
  ``frames / window_s`` frames per second (3 of 25-30) and only grabs the others, decoding the video once,
  sequentially, keeping 64x64 frames only. Complete windows go to the model in batches on a worker thread while
  decoding goes on. A model whose first half works frame by frame (LRCN: a CNN per frame, then an LSTM) is also
  run as two halves (:func:`split_per_frame`, checked against the whole model at load): each grid frame's CNN
  features are computed once and only the head runs per window. Window probabilities become per-second
  probabilities (each second averages the windows that cover it, weighted towards windows centred on it), then
  segments; runs shorter than :data:`MIN_SEGMENT_S` are merged into a neighbour, so one noisy window does not
  split a segment.
* A top probability below the model's ``uncertain_below`` is reported as :data:`UNCERTAIN` (the model knows six
  actions only; anything else must not look like an answer).
* :func:`analyze` runs several recognizers over one decoding pass; :func:`annotate` writes an H.264 MP4 with every
  model's current label drawn on every frame, the source's audio kept.

Frame ``j`` of a video is taken to show time ``j / fps`` (constant frame rate), as :mod:`har.video` does.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from har.errors import HarError, VideoError
from har.limits import describe_seconds, max_video_seconds
from har.video import count_frames, open_video, probe, sample_clip, sample_indices, to_model_frame

log = logging.getLogger(__name__)

UNCERTAIN = "none of the known actions"
MIN_SEGMENT_S = 2.0  # a run of fewer seconds than this is merged into a neighbour (smoothing)
MAX_SIDE, MAX_SHORT_SIDE = 1280, 720  # annotated copies are capped at 720p (landscape or portrait)
BATCH = 32  # windows per forward pass; smaller batches go as power-of-two chunks (few distinct shapes)

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    pass


# --------------------------------------------------------------------------------------------------------------
# Results


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

    @property
    def top(self) -> tuple[Score, ...]:
        """The ``top_k`` most probable classes, best first."""
        order = np.argsort(-self.probs, kind="stable")[: self.top_k]
        return tuple(Score(self.classes[i], float(self.probs[i])) for i in order)

    @property
    def uncertain(self) -> bool:
        return float(self.probs.max()) < self.uncertain_below

    @property
    def label(self) -> str:
        """The best class, or :data:`UNCERTAIN` when its probability is under the threshold."""
        return UNCERTAIN if self.uncertain else self.classes[int(self.probs.argmax())]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "top": [s.to_dict() for s in self.top], "uncertain": self.uncertain,
                "label": self.label, "uncertain_below": self.uncertain_below}


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    label: str  # a class, or UNCERTAIN
    score: float  # mean per-second probability of the label (of the best class when UNCERTAIN)

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2), "label": self.label,
                "score": round(float(self.score), 4)}


@dataclass(frozen=True)
class Timeline:
    """What a model sees over a long video: window scores, per-second probabilities and segments."""

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
    segments: tuple[Segment, ...] = field(default=())

    @property
    def classes(self) -> tuple[str, ...]:
        return self.clip.classes

    def label_at(self, t: float) -> tuple[str, float]:
        """``(label, probability)`` shown at time ``t``: the segment's label, that second's probability of it."""
        j = min(max(int(t), 0), len(self.seconds) - 1)
        seg = next((s for s in self.segments if s.start_s <= t < s.end_s), self.segments[-1])
        if seg.label == UNCERTAIN:
            return UNCERTAIN, float(self.probs[j].max())
        return seg.label, float(self.probs[j, self.classes.index(seg.label)])

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.clip.to_dict(),
            "duration_s": round(self.duration_s, 3),
            "window_s": round(self.window_s, 3),
            "hop_s": round(self.hop_s, 3),
            "windows": len(self.window_starts),
            "segments": [s.to_dict() for s in self.segments],
            "per_second": {"t": [int(t) for t in self.seconds], "classes": list(self.classes),
                           "probs": np.round(self.probs.astype(float), 4).tolist()},
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


# --------------------------------------------------------------------------------------------------------------
# The recognizer


class Recognizer:
    """A loaded, warmed-up model; safe to share between threads.

    ``model``: a shipped model name (``lrcn``, ``convlstm``) or a model directory.
    ``uncertain_below``: overrides the config's threshold on the top probability.
    ``share_frames``: for a model that starts frame by frame (LRCN), let overlapping timeline windows share the
    per-frame half of the network (same numbers, less work); False always runs the whole model per window.
    ``background``: return at once (after reading ``config.json``) and load TensorFlow and the model on a thread;
    calls that need the model wait for it. The CLI decodes the video meanwhile.
    ``runtime``: ``keras`` (TensorFlow; on a GPU when it sees one), ``onnx`` (ONNX Runtime on the directory's
    ``model.onnx``, no TensorFlow import) or ``auto`` (ONNX when usable and no GPU is present; see
    :func:`har.export.serving_session`). After loading, :attr:`runtime` says which serves.
    """

    def __init__(self, model: str | os.PathLike = "lrcn", *, uncertain_below: float | None = None,
                 batch_size: int = BATCH, share_frames: bool = True, background: bool = False,
                 runtime: str = "keras"):
        from har.config import ModelConfig
        from har.export import checked_runtime
        from har.modeldir import resolve_model_dir

        self._runtime_asked = checked_runtime(runtime)  # a wrong name fails here, not on the loading thread
        self.runtime: str | None = None  # "keras" or "onnx" once loaded
        self._model = None
        self._model_lock = threading.Lock()
        self.directory = resolve_model_dir(model)
        self.config = ModelConfig.load(self.directory)  # no TensorFlow needed for what the config says
        self.name = self.directory.name
        self.uncertain_below = self.config.uncertain_below if uncertain_below is None else float(uncertain_below)
        self.batch_size = batch_size
        self._share_frames = share_frames
        self._frame_fn = self._head_fn = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        if background:  # TensorFlow's import and the warm-up run beside the caller (the CLI decodes meanwhile)
            threading.Thread(target=self._load, name=f"har-load-{self.name}", daemon=True).start()
        else:
            self._load()
            self.wait()

    def _load(self) -> None:
        try:
            self._load_model()
        except BaseException as exc:  # kept for wait(), which raises it in the caller's thread
            self._error = exc
        finally:
            self._ready.set()

    def _load_model(self) -> None:
        from har.export import serving_session
        from har.modeldir import load_model
        from har.runtime import load_tensorflow

        session = None if self._runtime_asked == "keras" else serving_session(self.directory, self._runtime_asked)
        if session is not None:  # ONNX Runtime: no TensorFlow import at all
            c = self.config
            name = session.get_inputs()[0].name
            self._forward = lambda x: session.run(None, {name: np.ascontiguousarray(x, np.uint8)})[0]
            t0 = time.perf_counter()
            self._forward(np.zeros((1, c.frames, c.size, c.size, 3), np.uint8))
            self.runtime = "onnx"
            log.info("%s: ONNX Runtime on %s, warmed up in %.2f s", self.name, self.directory,
                     time.perf_counter() - t0)
            return
        self.runtime = "keras"
        tf = load_tensorflow()  # quiet import; GPUs (when seen) grow memory on demand, shared by several models
        self._model, self.config = load_model(self.directory)  # keras.Model, ModelConfig
        fold_time(self._model)
        c = self.config
        spec = tf.TensorSpec((None, c.frames, c.size, c.size, 3), tf.uint8)  # (batch, frames, H, W, 3) uint8
        # One signature with a free batch size: traced once, then callable from many threads at once.
        # (autograph=False: plain calls, nothing for AutoGraph to convert, and lambdas it cannot parse.)
        self._forward = tf.function(lambda x: self._model(x, training=False), input_signature=[spec],
                                    autograph=False)
        t0 = time.perf_counter()
        self._forward(np.zeros((1, c.frames, c.size, c.size, 3), np.uint8))  # trace now, not in a user's call
        # A model that first works frame by frame (LRCN) is also run as two halves, so overlapping timeline
        # windows share the per-frame work: features once per grid frame, then the sequence head per window.
        halves = split_per_frame(self._model, c.size) if self._share_frames else None
        if halves is not None:
            frame_model, head_model = halves
            dim = head_model.input_shape[-1]
            frame_fn = tf.function(lambda x: tf.cast(frame_model(x, training=False), tf.float32),
                                   input_signature=[tf.TensorSpec((None, c.size, c.size, 3), tf.uint8)],
                                   autograph=False)
            head_fn = tf.function(lambda f: head_model(f, training=False),
                                  input_signature=[tf.TensorSpec((None, c.frames, dim), tf.float32)],
                                  autograph=False)
            probe_clips = np.random.default_rng(0).integers(0, 256, (2, c.frames, c.size, c.size, 3), np.uint8)
            whole = self._run(probe_clips)
            self._frame_fn, self._head_fn = frame_fn, head_fn
            split = self._window_probs_from_features(self.frame_features(probe_clips.reshape(-1, c.size, c.size, 3))
                                                     .reshape(2, c.frames, dim))
            if not np.allclose(whole, split, atol=1e-4):  # a graph we misread: never serve different numbers
                log.warning("%s: per-frame split disagrees with the model (%.2g); not used", self.name,
                            float(np.abs(whole - split).max()))
                self._frame_fn = self._head_fn = None
        log.info("%s: loaded from %s, warmed up in %.2f s (per-frame split: %s)", self.name, self.directory,
                 time.perf_counter() - t0, self._frame_fn is not None)

    def wait(self) -> Recognizer:
        """Block until the model is loaded (at once unless built with ``background=True``); raises the load's
        error (a :class:`ModelError` for a damaged model) in the caller's thread."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    @property
    def ready(self) -> bool:
        """True once loading has finished (well or not), without waiting."""
        return self._ready.is_set()

    def settle(self) -> None:
        """Wait until loading has finished, well or not, without raising its error."""
        self._ready.wait()

    @property
    def model(self):
        """The ``keras.Model`` (waits for a background load; served through ONNX, it is loaded on first use)."""
        self.wait()
        with self._model_lock:
            if self._model is None:
                from har.modeldir import load_model
                from har.runtime import load_tensorflow

                load_tensorflow()
                self._model = load_model(self.directory)[0]
        return self._model

    def __repr__(self) -> str:
        return (f"Recognizer({self.name!r}, classes={len(self.config.classes)}, frames={self.config.frames}, "
                f"runtime={self.runtime or self._runtime_asked!r})")

    def probabilities(self, clips: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` float32 for uint8 clips ``(n, frames, size, size, 3)``."""
        self.wait()
        return self._run(clips)

    def _run(self, clips: np.ndarray) -> np.ndarray:
        c = self.config
        assert clips.ndim == 5 and clips.shape[1:] == (c.frames, c.size, c.size, 3), clips.shape
        out, i = [], 0
        for n in _chunks(len(clips), self.batch_size):
            out.append(np.asarray(self._forward(clips[i : i + n])))
            i += n
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(c.classes)), np.float32)

    @property
    def per_frame(self) -> bool:
        """True when timelines compute per-frame features once per frame and share them between windows."""
        self.wait()
        return self._frame_fn is not None

    def frame_features(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame features ``(n, dim)`` float32 for uint8 frames ``(n, size, size, 3)`` (``per_frame`` only)."""
        assert self._frame_fn is not None
        out = [self._frame_fn(frames[i : i + 4 * self.batch_size]).numpy()
               for i in range(0, len(frames), 4 * self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self._head_fn.input_signature[0].shape[-1]), np.float32)

    def _window_probs_from_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` for per-frame features of windows ``(n, frames, dim)``."""
        out = [self._head_fn(features[i : i + 8 * self.batch_size]).numpy()
               for i in range(0, len(features), 8 * self.batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(self.config.classes)), np.float32)

    def prediction(self, probs: np.ndarray, top_k: int = 5) -> ClipPrediction:
        return ClipPrediction(self.name, self.config.classes, np.asarray(probs, np.float32), self.uncertain_below,
                              _check_top_k(top_k))

    def classify(self, path: str | os.PathLike, top_k: int = 5, progress: Progress | None = None) -> ClipPrediction:
        """Top-k classes of the whole video at ``path``. Raises :class:`VideoError` for an unusable video."""
        progress = progress or _no_progress
        _check_top_k(top_k)
        _check_length(Path(path), probe(path).duration_s)
        progress(0.0, f"{self.name}: sampling {self.config.frames} frames")
        clip = sample_clip(path, self.config.frames, self.config.size)
        progress(0.8, f"{self.name}: classifying")
        pred = self.prediction(self.probabilities(clip[None])[0], top_k)
        progress(1.0, f"{self.name}: {pred.label}")
        return pred

    def timeline(self, path: str | os.PathLike, window_s: float | None = None, hop_s: float | None = None,
                 progress: Progress | None = None, top_k: int = 5) -> Timeline:
        """Windows of ``window_s`` seconds (default: the config's, the median training clip) every ``hop_s``
        seconds (default 1 s) over the whole video, in one decoding pass."""
        return _scan(Path(path), [self], window_s, hop_s, top_k, progress or _no_progress)[0]


_PER_FRAME = ("TimeDistributed", "Rescaling", "Dropout", "Activation", "ReLU")  # layers that act frame by frame


# Layers that treat every item of a batch on its own when serving (no statistics across the batch at inference).
_PER_ITEM = ("Conv2D", "DepthwiseConv2D", "Add", "BatchNormalization",  # + nested models of these (_per_item)
             "GroupNormalization", "ReLU", "Activation", "GlobalAveragePooling2D",
             "MaxPooling2D", "AveragePooling2D", "Dropout", "Flatten", "Rescaling", "Dense")


def _per_item(layer) -> bool:
    """True for a layer that treats batch items independently at inference: one of ``_PER_ITEM``, or a nested
    model made of such layers only (the imagenet presets' frame encoder)."""
    if type(layer).__name__ in ("Functional", "Sequential"):
        return all(type(inner).__name__ == "InputLayer" or _per_item(inner) for inner in layer.layers)
    return type(layer).__name__ in _PER_ITEM


def fold_time(model) -> int:
    """Serve ``model``'s TimeDistributed layers with time folded into the batch: ``(b, T, ...)`` -> one call on
    ``(b * T, ...)`` -> ``(b, T, ...)``. Keras 3 unrolls a TimeDistributed layer with a static time axis into one
    call per frame (19 convolutions for one); folded, the compiled graph has one, is traced about 3x faster and
    runs a clip in 7 ms instead of 12 (our LRCN). The same arithmetic on the same weights: outputs are
    identical. Only layers that treat batch items independently at inference are folded; the instance is
    changed in memory, never saved. Returns how many layers were folded."""
    import types

    import keras
    import tensorflow as tf

    def folded_call(self, inputs, training=None, mask=None):
        shape = tf.shape(inputs)
        flat = tf.reshape(inputs, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
        kwargs = {"training": training} if self.layer._call_has_training_arg else {}
        out = self.layer.call(flat, **kwargs)
        return tf.reshape(out, tf.concat([shape[:2], tf.shape(out)[1:]], 0))

    folded = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.TimeDistributed) and _per_item(layer.layer):
            layer.call = types.MethodType(folded_call, layer)
            folded += 1
    return folded


def split_per_frame(model, size: int):
    """``(frame_model, head_model)`` when ``model`` starts with a chain of layers that act frame by frame and the
    chain's last layer gives one vector per frame: ``frame_model`` maps uint8 ``(n, size, size, 3)`` to
    ``(n, dim)``, ``head_model`` maps ``(n, frames, dim)`` (the model's frames) to class probabilities; the head is
    the rest of the graph, whatever its shape (our ImageNet LRCN branches there into each vector and its change
    from the previous frame).
    None for any other graph (ConvLSTM: the first real layer is already recurrent; a later layer that reads the
    frames themselves). The caller checks that the halves agree."""
    import keras

    chain = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    cut = 0
    try:
        while (cut < len(chain) and type(chain[cut]).__name__ in _PER_FRAME
               and (chain[cut].input is (model.inputs[0] if cut == 0 else chain[cut - 1].output))):
            cut += 1
    except (AttributeError, ValueError):  # a layer used more than once has no single input/output
        return None
    if cut == len(chain) or not any(type(x).__name__ == "TimeDistributed" for x in chain[:cut]):
        return None
    if len(chain[cut - 1].output.shape) != 3:  # (batch, frames, dim): one vector per frame
        return None
    try:  # the graph from the per-frame output on; raises when a later layer also reads an earlier tensor
        head_model = keras.Model(chain[cut - 1].output, model.outputs[0])
    except ValueError:
        return None
    x = inputs = keras.Input((size, size, 3), dtype="uint8")
    for layer in chain[:cut]:
        x = (layer.layer if type(layer).__name__ == "TimeDistributed" else layer)(x)  # same weights, per frame
    return keras.Model(inputs, x), head_model


def _chunks(n: int, batch: int) -> list[int]:
    """Split ``n`` into full batches, then powers of two (few distinct shapes for a GPU's kernel autotuning):
    ``_chunks(45, 32) == [32, 8, 4, 1]``."""
    out = [batch] * (n // batch)
    rest = n % batch
    out += [2**i for i in reversed(range(rest.bit_length())) if rest >> i & 1]
    return out


def _check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise HarError(f"top-k must be a whole number of at least 1, not {top_k!r}.")
    return int(top_k)


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise HarError(f"The {name} length must be a positive number of seconds, not {value!r}.")
    return v


def _check_length(path: Path, seconds: float) -> None:
    limit = max_video_seconds()
    if seconds > limit:
        raise VideoError(
            f"'{path.name}' is {describe_seconds(seconds)} long; videos up to {describe_seconds(limit)} can be "
            "analysed. Trim it or pick a shorter part."
        )


# --------------------------------------------------------------------------------------------------------------
# Windows: one grid of sample times shared by all windows


@dataclass(frozen=True)
class WindowPlan:
    """Frames a recognizer needs from a video of ``total`` frames: its windows and the whole-clip sample."""

    starts_s: np.ndarray  # (K,) window start, seconds
    length_s: float  # every window's length (the video's when it is shorter than a window)
    indices: np.ndarray  # (K, frames) frame indices, ascending in each row and by first index
    clip: np.ndarray  # (frames,) the whole video sampled as in training


def plan_windows(total: int, fps: float, frames: int, window_s: float, hop_s: float) -> WindowPlan:
    """Windows of ``frames`` samples ``step = window_s / frames`` seconds apart, every ``hop_s`` seconds.

    Sample ``j`` of the video's grid is at ``(j + 0.5) * step`` seconds (the centre of the j-th step, as in
    :func:`har.video.sample_indices`), i.e. frame ``floor((j + 0.5) * step * fps)``. Window ``k`` takes grid
    samples ``g_k .. g_k + frames - 1`` with ``g_k = round(k * hop_s / step)``: it spans exactly ``window_s``
    seconds and starts within half a step of ``k * hop_s``. A last window is aligned to the video's end. A video
    shorter than a window is one window: the whole clip, as in training.
    """
    assert total > 0 and fps > 0 and frames > 0 and window_s > 0 and hop_s > 0, (total, fps, frames, window_s, hop_s)
    clip = sample_indices(total, frames)
    duration = total / fps
    step = window_s / frames
    grid = int(math.floor(duration / step + 1e-9))  # grid samples whose whole step lies inside the video
    if grid <= frames:
        return WindowPlan(np.zeros(1), duration, clip[None, :], clip)
    last = grid - frames
    firsts = sorted({min(int(round(k * hop_s / step)), last) for k in range(int(last * step / hop_s) + 2)})
    firsts = np.array(firsts, dtype=np.int64)
    g = firsts[:, None] + np.arange(frames)[None, :]  # (K, frames) grid sample numbers
    indices = np.minimum(np.floor((g + 0.5) * step * fps).astype(np.int64), total - 1)
    return WindowPlan(firsts * step, window_s, indices, clip)


def per_second(starts_s: np.ndarray, length_s: float, window_probs: np.ndarray, duration_s: float):
    """``(seconds (S,), probs (S, classes))``: each second averages the windows covering its centre, weighted
    by how close the window's centre is (triangular, 1 at the centre, 0 at the window's edges)."""
    n = max(1, int(math.ceil(duration_s - 1e-6)))
    t = np.arange(n, dtype=np.float64)
    centres = (t + np.minimum(t + 1, duration_s)) / 2  # the last second may be partial
    dist = np.abs(centres[:, None] - (starts_s + length_s / 2)[None, :])  # (S, K)
    half = length_s / 2
    w = np.where(dist < half, 1.0 - dist / half + 1e-3, 0.0)
    orphan = w.sum(axis=1) == 0  # a hop longer than the window leaves gaps: take the nearest window
    w[orphan, dist[orphan].argmin(axis=1)] = 1.0
    probs = (w @ window_probs) / w.sum(axis=1, keepdims=True)
    return t, probs.astype(np.float32)


def segments_of(probs: np.ndarray, duration_s: float, classes: Sequence[str], uncertain_below: float,
                min_s: float = MIN_SEGMENT_S) -> tuple[Segment, ...]:
    """Runs of equal per-second labels (a class, or UNCERTAIN under the threshold); runs shorter than ``min_s``
    join the neighbour that explains them better, shortest first."""
    conf = probs.max(axis=1)
    labels = np.where(conf >= uncertain_below, probs.argmax(axis=1), -1)  # -1: uncertain
    runs = _runs(labels)

    def support(label: int, a: int, b: int) -> float:  # how well ``label`` explains seconds a..b-1
        return float((1.0 - conf[a:b]).mean()) if label < 0 else float(probs[a:b, label].mean())

    while len(runs) > 1:
        i = min(range(len(runs)), key=lambda r: (runs[r][2] - runs[r][1], r))
        _, a, b = runs[i]
        if b - a >= min_s:
            break
        near = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        j = max(near, key=lambda j: support(runs[j][0], a, b))
        labels[a:b] = runs[j][0]
        runs = _runs(labels)
    out = []
    for label, a, b in runs:
        name = UNCERTAIN if label < 0 else classes[label]
        out.append(Segment(float(a), float(min(b, duration_s)), name, support(label, a, b) if label >= 0
                           else float(conf[a:b].mean())))
    return tuple(out)


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """``[(label, start, end), ...]`` of equal consecutive values."""
    cuts = np.flatnonzero(np.diff(labels)) + 1
    bounds = [0, *cuts.tolist(), len(labels)]
    return [(int(labels[a]), a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# --------------------------------------------------------------------------------------------------------------
# One decoding pass for any number of recognizers


class _WindowJob:
    """One recognizer's windows during a pass, for a model run whole: each window's frames are gathered as they
    decode and complete windows go to the model in batches on the worker thread."""

    def __init__(self, rec: Recognizer, plan: WindowPlan, pool: ThreadPoolExecutor):
        self.rec, self.plan, self.pool = rec, plan, pool
        self.wanted = set(np.unique(plan.indices).tolist())
        self.frames: dict[int, np.ndarray] = {}  # index -> (size, size, 3), only until no unsent window needs it
        self.next = 0  # first window not yet sent
        self.pending: list[np.ndarray] = []  # complete windows waiting for a full batch
        self.futures: list[Future] = []

    def add(self, index: int, frame: np.ndarray) -> None:
        self.frames[index] = frame

    def advance(self, done: int, final: bool = False) -> None:
        """Send every window whose frames are all decoded (all frames ``<= done``; every window when final)."""
        idx = self.plan.indices
        sent = self.next
        while self.next < len(idx) and (final or idx[self.next, -1] <= done):
            self.pending.append(_gather(idx[self.next], self.frames))
            self.next += 1
            if len(self.pending) == self.rec.batch_size:
                self._flush()
        if final:
            self._flush()
        if sent < self.next < len(idx):  # forget frames no unsent window needs (keep the newest for a recount)
            keep_from, newest = int(idx[self.next, 0]), max(self.frames, default=-1)
            for i in [i for i in self.frames if i < keep_from and i != newest]:
                del self.frames[i]

    def _flush(self) -> None:
        if self.pending:
            self.futures.append(self.pool.submit(self.rec.probabilities, np.stack(self.pending)))
            self.pending = []

    def window_probs(self) -> np.ndarray:
        self.advance(-1, final=True)
        return np.concatenate([f.result() for f in self.futures])


class _FrameJob:
    """One recognizer's windows during a pass, for a model split in halves: per-frame features of each grid frame
    once (in batches, on the worker thread), then the head over every window's features at the end."""

    def __init__(self, rec: Recognizer, plan: WindowPlan, pool: ThreadPoolExecutor):
        self.rec, self.plan, self.pool = rec, plan, pool
        self.wanted = set(np.unique(plan.indices).tolist())
        self.batch: list[np.ndarray] = []
        self.indices: list[int] = []  # frames retrieved, in decoding order
        self.futures: list[Future] = []

    def add(self, index: int, frame: np.ndarray) -> None:
        self.batch.append(frame)
        self.indices.append(index)
        if len(self.batch) == 4 * self.rec.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            self.futures.append(self.pool.submit(self.rec.frame_features, np.stack(self.batch)))
            self.batch = []

    def advance(self, done: int) -> None:
        pass

    def window_probs(self) -> np.ndarray:
        self._flush()
        features = np.concatenate([f.result() for f in self.futures])  # (retrieved, dim)
        have = np.asarray(self.indices)
        # each window frame's row; a frame that failed to decode takes the nearest decoded one
        pos = np.clip(np.searchsorted(have, self.plan.indices), 0, len(have) - 1)
        left = np.clip(pos - 1, 0, len(have) - 1)
        rows = np.where(np.abs(have[left] - self.plan.indices) < np.abs(have[pos] - self.plan.indices), left, pos)
        return self.rec._window_probs_from_features(features[rows])  # (windows, frames, dim) -> (windows, classes)


def _gather(indices: np.ndarray, frames: dict[int, np.ndarray]) -> np.ndarray:
    """``(n, size, size, 3)``: frame of each index; one that failed to decode takes the nearest decoded frame."""
    out = []
    for i in indices.tolist():
        if i not in frames:
            have = np.fromiter(frames, dtype=np.int64)
            i = int(have[np.argmin(np.abs(have - i))])
        out.append(frames[i])
    return np.stack(out)


def _scan(path: Path, recognizers: Sequence[Recognizer], window_s: float | None, hop_s: float | None,
          top_k: int, progress: Progress) -> list[Timeline]:
    """Timelines (with whole-clip predictions) of every recognizer from one sequential decoding pass."""
    _check_top_k(top_k)
    window_s, hop_s = _seconds("window", window_s), _seconds("hop", hop_s)
    info = probe(path)
    _check_length(path, info.duration_s)
    fps = info.fps or 25.0
    total = info.frame_count
    if total <= 0:  # the container does not say: count first (grab only), then plan
        progress(0.0, "counting frames")
        total, _ = count_frames(path)
        _check_length(path, total / fps)
    for attempt in range(2):
        found, timelines = _pass(path, recognizers, total, fps, window_s, hop_s, top_k, progress)
        if found == total or attempt == 1:
            return timelines
        # The container lied about its length: the windows were planned on the wrong count (as in sample_clip).
        log.debug("%s: container says %d frames, %d decode; second pass", path.name, total, found)
        total = found
    raise AssertionError("unreachable")


def _pass(path: Path, recognizers: Sequence[Recognizer], total: int, fps: float, window_s: float | None,
          hop_s: float | None, top_k: int, progress: Progress) -> tuple[int, list[Timeline]]:
    """Decode once, grabbing every frame and retrieving only those some window or whole-clip sample needs.
    Returns the frames that really decode and, when that is ``total`` (the plan was right), the timelines."""
    limit_frames = int(max_video_seconds() * fps * 1.02) + 1  # tolerate a container that understates a little
    names = ", ".join(r.name for r in recognizers)
    with ThreadPoolExecutor(1, thread_name_prefix="har-forward") as pool:
        jobs: list[_WindowJob | _FrameJob] = []
        for rec in recognizers:
            c = rec.config
            plan = plan_windows(total, fps, c.frames, window_s or c.window_s, hop_s or c.hop_s)
            # A model still loading in the background is run whole per window: always right, and no waiting here.
            jobs.append((_FrameJob if rec.ready and rec.per_frame else _WindowJob)(rec, plan, pool))
        sizes_at: dict[int, set[int]] = {}  # frame index -> sizes some job wants it at
        for job in jobs:
            for i in job.wanted | set(job.plan.clip.tolist()):
                sizes_at.setdefault(i, set()).add(job.rec.config.size)
        clip_frames: list[dict[int, np.ndarray]] = [{} for _ in jobs]  # the whole-clip samples, kept to the end
        clip_sets = [set(job.plan.clip.tolist()) for job in jobs]
        progress(0.0, f"{names}: decoding {total} frames")
        cap = open_video(path)
        n = retrieved = 0
        last_report = time.monotonic()
        try:
            while cap.grab():
                sizes = sizes_at.get(n)
                if sizes:
                    ok, img = cap.retrieve()
                    if ok and img is not None and img.size:
                        retrieved += 1
                        small = {s: to_model_frame(img, s) for s in sizes}
                        for job, clip, clip_set in zip(jobs, clip_frames, clip_sets, strict=True):
                            frame = small[job.rec.config.size]
                            if n in job.wanted:
                                job.add(n, frame)
                            if n in clip_set:
                                clip[n] = frame
                for job in jobs:
                    job.advance(n)
                n += 1
                if n % 64 == 0:
                    if n > limit_frames:
                        _check_length(path, n / fps)
                    if time.monotonic() - last_report > 0.25:
                        progress(0.95 * min(n / total, 1.0), f"{names}: decoded {n} of {total} frames")
                        last_report = time.monotonic()
        finally:
            cap.release()
        if n == 0 or retrieved == 0:
            raise VideoError(
                f"'{path.name}' has no decodable video frame: it may be audio-only, truncated before the first "
                "frame, or corrupt."
            )
        if n != total:
            for job in jobs:
                for f in job.futures:
                    f.cancel()
            return n, []
        clip_futures = [pool.submit(job.rec.probabilities, _gather(job.plan.clip, clip)[None])
                        for job, clip in zip(jobs, clip_frames, strict=True)]
        progress(0.95, f"{names}: scoring windows")
        timelines = []
        for job, clip_future in zip(jobs, clip_futures, strict=True):
            rec, plan = job.rec, job.plan
            wp = job.window_probs()
            clip = rec.prediction(clip_future.result()[0], top_k)
            duration = n / fps
            t, probs = per_second(plan.starts_s, plan.length_s, wp, duration)
            segs = segments_of(probs, duration, rec.config.classes, rec.uncertain_below)
            timelines.append(Timeline(rec.name, clip, duration, fps, n, plan.length_s,
                                      hop_s or rec.config.hop_s, plan.starts_s, wp, t, probs, segs))
    progress(1.0, f"{names}: timeline ready")
    return n, timelines


# --------------------------------------------------------------------------------------------------------------
# Several models, one call


def analyze(path: str | os.PathLike, recognizers: Recognizer | Sequence[Recognizer], *, timeline: bool = True,
            annotate_to: str | os.PathLike | None = None, top_k: int = 5, window_s: float | None = None,
            hop_s: float | None = None, progress: Progress | None = None) -> dict[str, Analysis]:
    """Every recognizer on the video at ``path``, side by side: ``{name: Analysis}`` in the given order.

    With ``timeline`` (default), one decoding pass serves all models' windows and whole-clip samples. With
    ``annotate_to``, one H.264 MP4 is written there with every model's label drawn on every frame (the timeline's
    current segment, or the clip's label when ``timeline`` is False).
    """
    progress = progress or _no_progress
    recs = [recognizers] if isinstance(recognizers, Recognizer) else list(recognizers)
    assert recs, "analyze needs at least one recognizer"
    names = [r.name for r in recs]
    assert len(set(names)) == len(names), f"recognizer names must differ: {names}"
    p = Path(path)
    share = 0.5 if annotate_to else 1.0  # progress share of the analysis (the rest: the annotated copy)
    sub = _scaled(progress, 0.0, share)
    results: list[Timeline | ClipPrediction]
    if timeline:
        results = _scan(p, recs, window_s, hop_s, top_k, sub)
    else:
        _check_top_k(top_k)
        _check_length(p, probe(p).duration_s)
        sampled: dict[tuple[int, int], np.ndarray] = {}
        results = []
        for i, r in enumerate(recs):
            key = (r.config.frames, r.config.size)
            if key not in sampled:
                sub(i / len(recs), f"{r.name}: sampling {key[0]} frames")
                sampled[key] = sample_clip(p, *key)
            results.append(r.prediction(r.probabilities(sampled[key][None])[0], top_k))
        sub(1.0, "classified")
    out_path = None
    if annotate_to:
        out_path = annotate(p, annotate_to, dict(zip(names, results, strict=True)), _scaled(progress, share, 1.0))
    return {
        r.name: Analysis(str(path), r.name, res.clip if isinstance(res, Timeline) else res,
                         res if isinstance(res, Timeline) else None, out_path)
        for r, res in zip(recs, results, strict=True)
    }


def _scaled(progress: Progress, a: float, b: float) -> Progress:
    return lambda f, msg: progress(a + (b - a) * f, msg)


# --------------------------------------------------------------------------------------------------------------
# The annotated copy: captions drawn once per change; ffmpeg decodes, overlays and encodes H.264


def ffmpeg_exe() -> str:
    """Debian's ``ffmpeg`` when on PATH, else the binary shipped in the ``imageio-ffmpeg`` wheel."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise HarError("No ffmpeg found to write the annotated video: install ffmpeg or `pip install "
                       "imageio-ffmpeg`.") from exc


def audio_codec(path: Path) -> str | None:
    """The codec of the first audio stream at ``path`` as ffmpeg names it (``aac``, ``opus``, ...); None when it
    has none or ffmpeg cannot tell. ffmpeg is asked to open the file only (about 50 ms)."""
    try:
        done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                              text=True, errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Stream #\d+:\d+\S*: Audio: (\w+)", done.stderr)
    return m.group(1) if m else None


def output_size(width: int, height: int) -> tuple[int, int]:
    """The source's size capped at 720p (1280x720, or 720x1280 for portrait), even on both sides."""
    scale = min(1.0, MAX_SIDE / max(width, height), MAX_SHORT_SIDE / min(width, height))
    w, h = int(width * scale), int(height * scale)
    return max(2, w - w % 2), max(2, h - h % 2)


def _encode_cmd(src: Path, captions: Path, tmp: Path, size: tuple[int, int], source_size: tuple[int, int],
                fps: float, frames: int, exact: bool, audio_codec: str | None = None) -> list[str]:
    """ffmpeg decodes ``src``, lays the caption images over it and encodes it as H.264 (yuv420p, +faststart)
    with the source's audio, cut to ``frames / fps`` seconds. With ``exact``, ``frames`` is known to decode and
    is also the count of frames written. Frame ``j`` keeps time ``j / fps``; none is dropped or repeated."""
    w, h = size
    sw, sh = source_size
    rate = Fraction(fps).limit_denominator(1001)  # 29.97002997 -> 30000/1001
    # an odd side loses one row/column (no resampling); a larger source is scaled down to 720p
    fit = ("" if (sw, sh) == (w, h) else f",crop={w}:{h}:0:0" if (sw - w, sh - h) in ((0, 1), (1, 0), (1, 1))
           else f",scale={w}:{h}:flags=area")
    graph = (f"[0:v:0]setpts=N/({rate.numerator}/{rate.denominator})/TB{fit},format=yuv420p[v];"
             "[1:v]format=rgba[c];[v][c]overlay=0:0:eof_action=repeat:format=yuv420,format=yuv420p[out]")
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-nostats", "-y",
           "-i", str(src), "-f", "concat", "-safe", "0", "-i", str(captions)]
    audio = []
    if frames > 0:  # the audio at most as long as the video; keeps every frame (unlike -shortest)
        cmd += ["-t", f"{frames / fps:.3f}", "-i", str(src)]
        # AAC (what MP4 sources and YouTube downloads mostly hold) is copied as it is: every browser plays it,
        # and re-encoding it cost about a second of CPU per 30 s. Anything else becomes AAC.
        codec = ["copy"] if audio_codec == "aac" else ["aac", "-b:a", "128k"]
        audio = ["-map", "2:a:0?", "-c:a", *codec]
    # ultrafast: about 40% less CPU than superfast for about twice the bytes at the same quality setting.
    return cmd + ["-filter_complex", graph, "-map", "[out]", *audio,
                  *(["-frames:v", str(frames)] if exact else []), "-fps_mode", "passthrough", "-r", str(rate),
                  "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p",
                  "-movflags", "+faststart", "-progress", "pipe:1", "-f", "mp4", str(tmp)]


def _caption_runs(items: Sequence[tuple[str, Timeline | ClipPrediction]], frames: int,
                  fps: float) -> list[tuple[int, tuple[tuple[str, bool], ...]]]:
    """``[(first frame, caption lines)]``: where the captions change, frame ``j`` showing time ``j / fps``."""
    runs: list[tuple[int, tuple[tuple[str, bool], ...]]] = []
    for n in range(max(frames, 1)):
        text = tuple(_caption(name, r, n / fps) for name, r in items)
        if not runs or runs[-1][1] != text:
            runs.append((n, text))
    return runs


def annotate(path: str | os.PathLike, out_path: str | os.PathLike,
             results: Timeline | ClipPrediction | Mapping[str, Timeline | ClipPrediction]
             | Sequence[Timeline | ClipPrediction],
             progress: Progress | None = None) -> Path:
    """Copy the video at ``path`` to ``out_path`` (H.264 MP4) with each result's current label and probability
    drawn on every frame, one line per model; same frame count and rate as the source, audio kept, size capped at
    720p. A timeline shows the label of the segment at each frame's time; a clip prediction the same label
    throughout.

    The captions are drawn once per change (a few per second at most) as transparent images; ffmpeg decodes the
    source, lays them over it and encodes, in one process: no raw frame crosses a pipe. ``out_path`` appears
    only when complete (a temporary file beside it is renamed)."""
    progress = progress or _no_progress
    if isinstance(results, (Timeline, ClipPrediction)):
        results = [results]
    items = list(results.items()) if isinstance(results, Mapping) else [(r.model, r) for r in results]
    src = Path(path)
    info = probe(src)
    _check_length(src, info.duration_s)
    fps = info.fps or 25.0
    cap = open_video(src)  # the first frame: decodable at all, and its size as decoded (rotation applied)
    try:
        ok, first = cap.read()
    finally:
        cap.release()
    if not ok or first is None or not first.size:
        raise VideoError(f"'{src.name}' has no decodable video frame: it may be audio-only, truncated before the "
                         "first frame, or corrupt.")
    sh, sw = first.shape[:2]
    size = output_size(sw, sh)
    # A timeline knows how many frames really decode (a container may say otherwise); copy exactly those.
    counted = [r.frame_count for _, r in items if isinstance(r, Timeline)]
    total = counted[0] if counted else info.frame_count if info.frame_count > 0 else count_frames(src)[0]
    runs = _caption_runs(items, total, fps)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.{threading.get_ident()}.tmp.mp4")
    limit = int(max_video_seconds() * fps * 1.02) + 1
    with tempfile.TemporaryDirectory(prefix="har-captions-") as workdir, tempfile.TemporaryFile() as err:
        _write_captions(Path(workdir), runs, size, fps)
        cmd = _encode_cmd(src, Path(workdir) / "captions.txt", tmp, size, (sw, sh), fps, total, bool(counted),
                          audio_codec(src))
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
        frame, last_report, too_long = 0, time.monotonic(), False
        try:
            for line in proc.stdout:  # -progress: key=value lines, a block about twice a second
                if line.startswith("frame="):
                    frame = int(line[6:].strip() or 0)
                    if frame > limit:
                        too_long = True
                        proc.kill()
                        break
                    if time.monotonic() - last_report > 0.25:
                        progress(min(frame / total, 1.0) if total > 0 else 0.5, f"annotating frame {frame}")
                        last_report = time.monotonic()
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            tmp.unlink(missing_ok=True)
            raise
        if too_long:
            tmp.unlink(missing_ok=True)
            _check_length(src, frame / fps)
        if code != 0:
            tmp.unlink(missing_ok=True)
            err.seek(0)
            reason = err.read().decode(errors="replace").strip().splitlines()
            raise HarError(f"ffmpeg could not write {out.name}: {reason[-1] if reason else f'exit {code}'}")
    os.replace(tmp, out)
    progress(1.0, f"annotated copy written: {out.name}")
    return out


def _write_captions(workdir: Path, runs: Sequence[tuple[int, tuple[tuple[str, bool], ...]]],
                    size: tuple[int, int], fps: float) -> None:
    """One RGBA image per caption change, all of one size (the largest box), and an ffconcat list timing them."""
    overlays = [_Overlay(text, size) for _, text in runs]
    bw = max(o.box[0] for o in overlays)
    bh = max(o.box[1] for o in overlays)
    lines = ["ffconcat version 1.0"]
    for i, ((start, _), overlay) in enumerate(zip(runs, overlays, strict=True)):
        name = f"c{i:05d}.png"
        cv2.imwrite(str(workdir / name), overlay.rgba((bw, bh)))
        # from half a frame before its first frame, so rounding never shows the previous caption on it
        begin = max(start - 0.5, 0.0) / fps
        end = (runs[i + 1][0] - 0.5) / fps if i + 1 < len(runs) else None
        lines.append(f"file '{name}'")
        if end is not None:
            lines.append(f"duration {end - begin:.6f}")
    lines.append(f"file 'c{len(runs) - 1:05d}.png'")  # the concat demuxer needs the last image twice
    (workdir / "captions.txt").write_text("\n".join(lines) + "\n")


def _caption(name: str, result: Timeline | ClipPrediction, t: float) -> tuple[str, bool]:
    """``("lrcn: Archery 93%", uncertain)`` for time ``t``. ASCII only: OpenCV's fonts have no other glyphs."""
    if isinstance(result, Timeline):
        label, p = result.label_at(t)
        best = result.classes[int(result.probs[min(int(t), len(result.probs) - 1)].argmax())]
    else:
        label, p, best = result.label, float(result.probs.max()), result.top[0].label
    if label == UNCERTAIN:
        return f"{name}: {UNCERTAIN} (best guess {best} {p:.0%})", True
    return f"{name}: {label} {p:.0%}", False


class _Overlay:
    """Caption lines in a dark box at the top left, sized to the frame; drawn in place on each frame."""

    FONT = cv2.FONT_HERSHEY_SIMPLEX

    def __init__(self, lines: tuple[tuple[str, bool], ...], size: tuple[int, int]):
        w, h = size
        scale = max(0.4, min(h, w) / 720 * 0.9)
        widest = max(cv2.getTextSize(t, self.FONT, 1.0, 2)[0][0] for t, _ in lines)
        scale = max(0.3, min(scale, (w - 16) / max(widest, 1)))  # long captions on narrow videos shrink
        self.thick = max(1, int(round(scale * 2)))
        self.scale = scale
        self.pad = max(3, int(round(8 * scale)))
        (tw, th), base = cv2.getTextSize("Ag", self.FONT, scale, self.thick)
        self.line_h = th + base + self.pad
        self.lines = lines
        box_w = max(cv2.getTextSize(t, self.FONT, scale, self.thick)[0][0] for t, _ in lines) + 2 * self.pad
        self.box = (min(w, box_w), min(h, self.line_h * len(lines) + self.pad))
        self.ascent = th

    def rgba(self, canvas: tuple[int, int]) -> np.ndarray:
        """BGRA image ``canvas`` (w, h) large: the box darkens what lies under it to a quarter (alpha 3/4), the
        text is opaque with anti-aliased edges; transparent outside the box."""
        cw, ch = canvas
        bw, bh = self.box
        coverage = np.zeros((ch, cw), np.uint8)
        colour = np.zeros((ch, cw, 3), np.float32)
        for i, (text, uncertain) in enumerate(self.lines):
            y = self.pad + self.ascent + i * self.line_h
            mask = np.zeros_like(coverage)
            cv2.putText(mask, text, (self.pad, y), self.FONT, self.scale, 255, self.thick, cv2.LINE_AA)
            colour[mask > 0] = (0, 200, 255) if uncertain else (255, 255, 255)  # BGR: amber when uncertain
            np.maximum(coverage, mask, out=coverage)
        c = coverage.astype(np.float32)[..., None] / 255.0
        # straight alpha a with a*fg + (1-a)*bg == c*colour + (1-c)*bg/4: a = 3/4 + c/4, fg = c*colour/a
        alpha = np.zeros((ch, cw, 1), np.float32)
        alpha[:bh, :bw] = 0.75 + 0.25 * c[:bh, :bw]
        fg = np.divide(c * colour, alpha, out=np.zeros_like(colour), where=alpha > 0)
        return np.concatenate([np.round(fg), np.round(alpha * 255)], axis=-1).clip(0, 255).astype(np.uint8)

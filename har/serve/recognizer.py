"""A model directory loaded once and served to any number of calls from any number of threads.

:class:`Recognizer` reads ``config.json`` (classes, frames per clip, frame size, timeline window, uncertainty
threshold), loads the model on one :class:`har.serve.backends.Backend` (TensorFlow or ONNX Runtime, chosen once) and
warms it up. It holds no per-call state.

* :meth:`Recognizer.classify` samples the whole video as in training (:func:`har.media.video.sample_clip`).
* :meth:`Recognizer.timeline` slides a window over a long video in one decoding pass (:mod:`har.serve.timeline`).
* :func:`har.serve.analysis.analyze` runs several recognizers over one pass.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from har.config import ModelConfig
from har.media.limits import check_length
from har.media.video import probe, sample_clip_counted
from har.modeldir import resolve_model_dir
from har.openset.score import OPENSET_FILE, Familiarity
from har.progress import Progress, silent
from har.serve.backends import Backend, checked_runtime, load_backend
from har.serve.quantize import INT8_FILE, int8_familiarity
from har.serve.results import ClipPrediction, Timeline, check_top_k
from har.serve.timeline import scan

log = logging.getLogger(__name__)

BATCH = 32  # windows per forward pass; smaller batches go as power-of-two chunks (few distinct shapes)


class Recognizer:
    """A loaded, warmed-up model; safe to share between threads.

    ``model``: a shipped model name (``lrcn``, ``convlstm``) or a model directory.
    ``uncertain_below``: overrides the config's threshold on the top probability.
    ``share_frames``: for a model that starts frame by frame (the ImageNet LRCN and ConvLSTM: an encoder per
    frame), let overlapping timeline windows share the per-frame half of the network (same numbers, less work);
    False always runs the whole model per window.
    ``background``: return at once (after reading ``config.json``) and load TensorFlow and the model on a thread;
    calls that need the model wait for it. The CLI decodes the video meanwhile.
    ``runtime``: ``keras`` (TensorFlow; on a GPU when it sees one), ``onnx`` (ONNX Runtime on the directory's
    float ONNX copy, no TensorFlow import), ``onnx-int8`` (its int8 per-frame half beside the float head) or
    ``auto`` (ONNX when usable and no GPU is present, int8 when current; see
    :func:`har.serve.backends.serving_sessions`). After loading, :attr:`runtime` and :attr:`precision` say which
    serves.
    """

    def __init__(self, model: str | os.PathLike = "lrcn", *, uncertain_below: float | None = None,
                 batch_size: int = BATCH, share_frames: bool = True, background: bool = False,
                 runtime: str = "keras"):
        runtime = checked_runtime(runtime)  # a wrong name fails here, not on the loading thread
        directory = resolve_model_dir(model)
        config = ModelConfig.load(directory)  # no TensorFlow needed for what the config says
        self._setup(directory.name, config, directory, uncertain_below, batch_size)
        self._runtime_asked = runtime

        def load() -> Backend:
            return load_backend(directory, config, runtime, share_frames)

        if background:  # TensorFlow's import and the warm-up run beside the caller (the CLI decodes meanwhile)
            threading.Thread(target=self._load, args=(load,), name=f"har-load-{self.name}", daemon=True).start()
        else:
            self._load(load)
            self.wait()

    @classmethod
    def serving(cls, backend: Backend, config: ModelConfig, name: str, *, uncertain_below: float | None = None,
                batch_size: int = BATCH) -> Recognizer:
        """A recognizer on a backend already made (no model directory): for tests and embedding."""
        rec = cls.__new__(cls)
        rec._setup(name, config, None, uncertain_below, batch_size)
        rec._runtime_asked = backend.runtime
        rec._load(lambda: backend)
        return rec

    def _setup(self, name: str, config: ModelConfig, directory: Path | None, uncertain_below: float | None,
               batch_size: int) -> None:
        self.name = name
        self.config = config
        self.directory = directory
        self.uncertain_below = config.uncertain_below if uncertain_below is None else float(uncertain_below)
        self.batch_size = batch_size
        # the open-set score (har.openset.score); None: "none of the known actions" from the top probability alone
        self.familiarity = Familiarity.load(directory) if directory is not None else None
        if self.familiarity is None and config.encoder:
            log.warning("%s has no %s: it is served on the top probability alone (no open-set score)", name,
                        OPENSET_FILE)
        self.backend: Backend | None = None
        self._keras_model = None
        self._model_lock = threading.Lock()
        self._error: BaseException | None = None
        self._ready = threading.Event()

    def _load(self, load) -> None:
        try:
            self.backend = load()
            if self.backend.precision == "int8":  # the open-set score's offsets for int8 features
                self.familiarity = int8_familiarity(self.familiarity, self.backend.sessions[INT8_FILE])
            fam = self.familiarity
            if fam is not None and fam.needs_logits and self.backend.per_frame and not self.backend.logits:
                log.warning("%s: its open-set score reads the model's logits, which its %s copy does not give "
                            "(python -m har export writes them); served on the top probability alone", self.name,
                            self.backend.runtime)
                self.familiarity = None
        except BaseException as exc:  # kept for wait(), which raises it in the caller's thread
            self._error = exc
        finally:
            self._ready.set()

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
    def runtime(self) -> str | None:
        """``"keras"`` or ``"onnx"`` once loaded; None before."""
        return self.backend.runtime if self.backend is not None else None

    @property
    def precision(self) -> str | None:
        """What serves the per-frame half once loaded: ``"float32"``, or ``"int8"`` (ONNX Runtime on
        ``frame.int8.onnx``, :mod:`har.serve.quantize`); None before."""
        return self.backend.precision if self.backend is not None else None

    @property
    def keras_model(self):
        """The ``keras.Model`` (waits for a background load; served through ONNX, it is loaded on first use)."""
        self.wait()
        with self._model_lock:
            if self._keras_model is None:
                from har.modeldir import load_model
                from har.serve.runtime import load_tensorflow

                model = getattr(self.backend, "model", None)
                if model is None:
                    load_tensorflow()
                    model = load_model(self.directory)[0]
                self._keras_model = model
        return self._keras_model

    def __repr__(self) -> str:
        return (f"Recognizer({self.name!r}, classes={len(self.config.classes)}, frames={self.config.frames}, "
                f"runtime={self.runtime or self._runtime_asked!r}, precision={self.precision!r})")

    # --- forward passes, in batches ---------------------------------------------------------------------------

    def probabilities(self, clips: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` float32 for uint8 clips ``(n, frames, size, size, 3)``."""
        self.wait()
        out = self._in_batches(self.backend.clips, clips)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(self.config.classes)), np.float32)

    def _in_batches(self, forward, clips: np.ndarray) -> list:
        """``forward`` on uint8 clips ``(n, frames, size, size, 3)`` in batches (:func:`_chunks`): its answers."""
        c = self.config
        assert clips.ndim == 5 and clips.shape[1:] == (c.frames, c.size, c.size, 3), clips.shape
        out, i = [], 0
        for n in _chunks(len(clips), self.batch_size):
            out.append(forward(clips[i : i + n]))
            i += n
        return out

    @property
    def per_frame(self) -> bool:
        """True when timelines compute per-frame features once per frame and share them between windows."""
        self.wait()
        return self.backend.per_frame

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """One frame's features, ``(dim,)`` (LRCN) or ``(h, w, c)`` (ConvLSTM); ``()`` unless ``per_frame``."""
        self.wait()
        return tuple(self.backend.feature_shape) if self.backend.per_frame else ()

    def frame_features(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame features ``(n, *feature_shape)`` float32 for uint8 frames ``(n, size, size, 3)``
        (``per_frame`` only)."""
        assert self.per_frame
        step = self.batch_size  # 128-px frames through the whole encoder: 4x this took 3.9 GB for a 1-min video
        out = [self.backend.frames(frames[i : i + step]) for i in range(0, len(frames), step)]
        return np.concatenate(out) if out else np.zeros((0, *self.feature_shape), np.float32)

    def head_probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` for per-frame features of windows ``(n, frames, *feature_shape)``."""
        return self.head_outputs(features)[0]

    def head_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probs, logits)`` ``(n, classes)`` for per-frame features of windows ``(n, frames, *feature_shape)``;
        logits None when the served copy has none."""
        assert self.per_frame
        step = 8 * self.batch_size
        out = [self.backend.head_outputs(features[i : i + step]) for i in range(0, len(features), step)]
        if not out:
            return np.zeros((0, len(self.config.classes)), np.float32), None
        logits = None if out[0][1] is None else np.concatenate([lg for _, lg in out]).astype(np.float32)
        return np.concatenate([p for p, _ in out]).astype(np.float32), logits

    def features_and_probabilities(self, clips: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """``(features, probs)`` of uint8 clips ``(n, frames, size, size, 3)`` from one pass: each clip's per-frame
        features ``(n, frames, *feature_shape)`` float32 and its class probabilities ``(n, classes)``, the head's
        over those features (:meth:`probabilities`' to within the check made at load, 1e-4). Features are None
        for a model served whole (not ``per_frame``)."""
        return self.features_and_outputs(clips)[:2]

    def features_and_outputs(self, clips: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """``(features, probs, logits)``: :meth:`features_and_probabilities` and the head's logits (None for a
        model served whole, or a copy without them)."""
        if not self.per_frame:
            return None, self.probabilities(clips), None
        parts = self._in_batches(self.backend.features_and_outputs, clips)
        c = self.config
        if not parts:
            return (np.zeros((0, c.frames, *self.feature_shape), np.float32), np.zeros((0, len(c.classes)), np.float32),
                    None)
        logits = None if parts[0][2] is None else np.concatenate([lg for *_, lg in parts]).astype(np.float32)
        probs = np.concatenate([p for _, p, _ in parts]).astype(np.float32)
        return np.concatenate([f for f, *_ in parts]), probs, logits

    # --- answers ----------------------------------------------------------------------------------------------

    def prediction(self, probs: np.ndarray, top_k: int = 5, familiarity: float | None = None) -> ClipPrediction:
        fam = self.familiarity
        return ClipPrediction(self.name, self.config.classes, np.asarray(probs, np.float32), self.uncertain_below,
                              check_top_k(top_k), familiarity=None if familiarity is None else float(familiarity),
                              familiar_above=None if familiarity is None or fam is None else fam.threshold)

    @property
    def open_set(self) -> bool:
        """True when answers carry a familiarity: an open-set score and the model served in halves."""
        return self.familiarity is not None and self.per_frame

    def answer(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probs (n, classes), familiarity (n,) or None)`` of uint8 clips ``(n, frames, size, size, 3)``."""
        if not self.open_set:
            return self.probabilities(clips), None
        features, probs, logits = self.features_and_outputs(clips)
        return probs, self.familiarity(features, logits)

    def classify(self, path: str | os.PathLike, top_k: int = 5, progress: Progress | None = None) -> ClipPrediction:
        """Top-k classes of the whole video at ``path``. Raises :class:`VideoError` for an unusable video."""
        progress = progress or silent
        check_top_k(top_k)
        info = probe(path)
        check_length(Path(path), info.duration_s)
        progress(0.0, f"{self.name}: sampling {self.config.frames} frames")
        clip, decoded = sample_clip_counted(path, self.config.frames, self.config.size)
        progress(0.8, f"{self.name}: classifying")
        probs, fam = self.answer(clip[None])
        pred = self.prediction(probs[0], top_k, None if fam is None else fam[0]).read(
            decoded / (info.fps or 25.0), info.duration_s)
        progress(1.0, f"{self.name}: {pred.label}")
        return pred

    def timeline(self, path: str | os.PathLike, window_s: float | None = None, hop_s: float | None = None,
                 progress: Progress | None = None, top_k: int = 5, penalty: float | None = None) -> Timeline:
        """Windows of ``window_s`` seconds every ``hop_s`` seconds over the whole video, in one decoding pass,
        decoded into segments with ``penalty`` per change of state (defaults: :func:`har.serve.timeline.settings`,
        :data:`har.serve.timeline.SWITCH_PENALTY`)."""
        return scan(Path(path), [self], window_s, hop_s, top_k, progress or silent, penalty)[0]


def _chunks(n: int, batch: int) -> list[int]:
    """Split ``n`` into full batches, then powers of two (few distinct shapes for a GPU's kernel autotuning):
    ``_chunks(45, 32) == [32, 8, 4, 1]``."""
    out = [batch] * (n // batch)
    rest = n % batch
    out += [2**i for i in reversed(range(rest.bit_length())) if rest >> i & 1]
    return out


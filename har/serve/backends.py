"""The runtimes a model directory is served on: one small interface, one class per runtime, chosen once at load.

A :class:`Backend` answers these calls on uint8 input, whatever serves it:

* ``clips(x)``: class probabilities ``(n, classes)`` float32 of clips ``(n, frames, size, size, 3)``;
* ``frames(x)`` and ``head(f)``, only when ``per_frame`` is True: the model's per-frame half, features
  ``(n, *feature_shape)`` of frames ``(n, size, size, 3)`` (a vector per frame for the LRCN, maps ``(h, w, c)``
  for the ConvLSTM), and the rest of it, probabilities of windows of features ``(n, frames, *feature_shape)``.
  Overlapping timeline windows then share each frame's features (same numbers, less work);
* ``head_outputs(f)``: the head's probabilities and its logits (None from an ONNX copy exported without them);
* ``features_and_outputs(x)``: a clip's per-frame features, probabilities and logits from one pass (features and
  logits None when the model is served whole).

``precision`` says what serves the per-frame half: ``float32``, or ``int8`` for ONNX Runtime on ``frame.int8.onnx``
(:mod:`har.serve.quantize`).

:class:`KerasBackend` is TensorFlow (on a GPU when it sees one), :class:`OnnxBackend` is ONNX Runtime on the
directory's ONNX copy (:mod:`har.serve.export`: ``frame.onnx`` and ``head.onnx``, or ``model.onnx`` for a model that
does
not split; no TensorFlow import: 0.3 s to start instead of about 4). :func:`load_backend` picks one (``auto``: ONNX
when the copy is current and no GPU is present, its int8 per-frame half when that is current too). On a machine with
ONNX Runtime's CUDA provider, ONNX Runtime sessions run on it (float halves only). The code that uses a backend never
asks which one it has, except to report it (``runtime``, ``precision``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path

import numpy as np

from har.config import ModelConfig
from har.errors import ModelError
from har.serve.export import DIGEST_KEY, FRAME_FILE, HEAD_FILE, ONNX_FILE, keras_digest, run_onnx, run_onnx_outputs
from har.serve.quantize import INT8_FILE
from har.settings import RUNTIMES, settings

log = logging.getLogger(__name__)

# RUNTIMES (har.settings): "onnx" serves the float halves (the copy checked against Keras); "onnx-int8" the int8
# per-frame half beside the float head; "auto" picks (serving_sessions)
FRAME_CHUNK = 32  # frames per call of an ONNX per-frame half

# ONNX Runtime writes a session id to TMPDIR/.ses when it is imported: one small file of that fixed name, rewritten,
# never one per request. Checks for leftover temporaries leave it out.
ORT_SESSION_FILE = ".ses"


def checked_runtime(runtime: str) -> str:
    """``runtime`` when it is one of RUNTIMES; a :class:`ModelError` naming them otherwise."""
    if runtime not in RUNTIMES:
        raise ModelError(f"Unknown runtime '{runtime}': use one of {', '.join(RUNTIMES)}.")
    return runtime


class Backend:
    """A loaded model's forward pass. Subclasses set ``runtime`` and implement ``clips`` (and, with
    ``per_frame``, ``frames`` and ``head``); every call is safe from many threads at once."""

    runtime = ""  # "keras" or "onnx"
    precision = "float32"  # of the per-frame half: "float32" or "int8"
    per_frame = False  # True when frames() and head() serve the model in two halves
    feature_shape: tuple[int, ...] = ()  # one frame's features, (dim,) or (h, w, c) (per_frame only)
    logits = False  # True when head_outputs() gives logits beside the probabilities

    def clips(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def frames(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not serve per-frame features")

    def head(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not serve per-frame features")

    def head_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probs, logits)``; a backend whose head gives no logits answers ``(head(features), None)``."""
        return self.head(features), None

    def features_and_outputs(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """``(features, probs, logits)`` of clips ``x`` ``(n, frames, size, size, 3)`` from one pass: with
        ``per_frame``, the per-frame half's features ``(n, frames, *feature_shape)`` float32 and the head's
        probabilities and logits ``(n, classes)`` over them; otherwise ``(None, clips(x), None)``."""
        return self._through_halves(x) if self.per_frame else (None, self.clips(x), None)

    def _through_halves(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        features = self.frames(x.reshape(-1, *x.shape[2:])).reshape(*x.shape[:2], *self.feature_shape)
        return features, *self.head_outputs(features)


class OnnxBackend(Backend):
    """ONNX Runtime on sessions of the directory's current ONNX copy (:func:`onnx_sessions`): ``frame.onnx`` and
    ``head.onnx`` serve the model in halves (a clip is the head over its frames' features; ``share_frames`` False
    makes timelines run them per window all the same), ``model.onnx`` whole windows only."""

    runtime = "onnx"

    def __init__(self, sessions: dict, config: ModelConfig, share_frames: bool = True):
        c = config
        self.sessions = sessions  # file name -> onnxruntime.InferenceSession
        self._whole = sessions.get(ONNX_FILE)
        if self._whole is None:
            self._frame, self._head = sessions.get(INT8_FILE) or sessions[FRAME_FILE], sessions[HEAD_FILE]
            self.precision = "int8" if INT8_FILE in sessions else "float32"
            self.feature_shape = tuple(self.frames(np.zeros((1, c.size, c.size, 3), np.uint8)).shape[1:])
            self.per_frame = share_frames
            self.logits = len(self._head.get_outputs()) > 1
        self.clips(np.zeros((1, c.frames, c.size, c.size, 3), np.uint8))  # warm up

    def clips(self, x: np.ndarray) -> np.ndarray:
        if self._whole is not None:
            return run_onnx(self._whole, np.ascontiguousarray(x, np.uint8))
        return self._through_halves(x)[1]

    def frames(self, x: np.ndarray) -> np.ndarray:
        # in chunks: a batch of 32 windows is 640 frames, and 640 frames of 128 px through the whole encoder at once
        # took 3.9 GB of activations (a timeline whose model was still loading runs whole windows)
        x = np.ascontiguousarray(x, np.uint8)
        if len(x) <= FRAME_CHUNK:
            return run_onnx(self._frame, x)
        return np.concatenate([run_onnx(self._frame, x[i : i + FRAME_CHUNK]) for i in range(0, len(x), FRAME_CHUNK)])

    def head(self, features: np.ndarray) -> np.ndarray:
        return self.head_outputs(features)[0]

    def head_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probs, *logits = run_onnx_outputs(self._head, np.ascontiguousarray(features, np.float32))
        return probs, (logits[0] if logits else None)


class KerasBackend(Backend):
    """TensorFlow on ``model.keras``, time folded into the batch (:func:`har.serve.surgery.fold_time`), compiled once
    with a free batch size. With ``share_frames``, a model that starts frame by frame is also served in halves
    (:func:`har.serve.surgery.split_per_frame`), kept only when the halves agree with the whole model."""

    runtime = "keras"

    def __init__(self, directory: Path, config: ModelConfig, share_frames: bool = True):
        from har.modeldir import load_model
        from har.serve.runtime import load_tensorflow
        from har.serve.surgery import fold_time, split_per_frame, with_logits

        tf = load_tensorflow()  # quiet import; GPUs (when seen) grow memory on demand, shared by several models
        self.model, _ = load_model(directory)  # keras.Model
        fold_time(self.model)
        c = config
        spec = tf.TensorSpec((None, c.frames, c.size, c.size, 3), tf.uint8)  # (batch, frames, H, W, 3) uint8
        # One signature with a free batch size: traced once, then callable from many threads at once.
        # (autograph=False: plain calls, nothing for AutoGraph to convert, and lambdas it cannot parse.)
        self._forward = tf.function(lambda x: self.model(x, training=False), input_signature=[spec],
                                    autograph=False)
        self._forward(np.zeros((1, c.frames, c.size, c.size, 3), np.uint8))  # trace now, not in a user's call
        # the halves of the model with its logits beside its probabilities (the open-set score reads them)
        halves = split_per_frame(with_logits(self.model) or self.model, c.size) if share_frames else None
        if halves is None:
            return
        frame_model, head_model = halves
        shape = tuple(head_model.input_shape[2:])  # one frame's features: (dim,) or (h, w, c)
        frame_fn = tf.function(lambda x: tf.cast(frame_model(x, training=False), tf.float32),
                               input_signature=[tf.TensorSpec((None, c.size, c.size, 3), tf.uint8)],
                               autograph=False)
        head_fn = tf.function(lambda f: tuple(tf.nest.flatten(head_model(f, training=False))),
                              input_signature=[tf.TensorSpec((None, c.frames, *shape), tf.float32)],
                              autograph=False)
        probe = np.random.default_rng(0).integers(0, 256, (2, c.frames, c.size, c.size, 3), np.uint8)
        whole = self.clips(probe)
        self._frame_fn, self._head_fn, self.feature_shape = frame_fn, head_fn, shape
        split = self._through_halves(probe)[1]
        if not np.allclose(whole, split, atol=1e-4):  # a graph we misread: never serve different numbers
            log.warning("%s: per-frame split disagrees with the model (%.2g); not used", Path(directory).name,
                        float(np.abs(whole - split).max()))
            self.feature_shape = ()
            return
        self.per_frame = True
        self.logits = len(head_model.outputs) > 1

    def clips(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(x))

    def frames(self, x: np.ndarray) -> np.ndarray:
        return self._frame_fn(x).numpy()

    def head(self, features: np.ndarray) -> np.ndarray:
        return self.head_outputs(features)[0]

    def head_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probs, *logits = (out.numpy() for out in self._head_fn(features))
        return probs, (logits[0] if logits else None)


def load_backend(directory: Path, config: ModelConfig, runtime: str = "keras", share_frames: bool = True) -> Backend:
    """The backend serving ``directory`` on ``runtime`` (see :func:`serving_sessions` for ``auto``), warmed up."""
    t0 = time.perf_counter()
    sessions = None if checked_runtime(runtime) == "keras" else serving_sessions(directory, runtime)
    if sessions is not None:  # ONNX Runtime: no TensorFlow import at all
        backend: Backend = OnnxBackend(sessions, config, share_frames)
        log.info("%s: ONNX Runtime on %s in %s, warmed up in %.2f s (per-frame split: %s; %s)", directory.name,
                 " and ".join(sessions), directory, time.perf_counter() - t0, backend.per_frame,
                 ", ".join(next(iter(sessions.values())).get_providers()))
        return backend
    backend = KerasBackend(directory, config, share_frames)
    log.info("%s: loaded from %s, warmed up in %.2f s (per-frame split: %s)", directory.name, directory,
             time.perf_counter() - t0, backend.per_frame)
    return backend


def onnx_sessions(directory: Path, int8: bool = False) -> dict | None:
    """ONNX Runtime sessions on ``directory``'s ONNX copy made from its present ``model.keras``, by file name:
    ``frame.onnx`` and ``head.onnx`` (the model in halves) when both are current, else ``model.onnx`` (whole) when
    that is; None when there is no current copy (a warning says why a file present is not used). With ``int8``,
    ``frame.int8.onnx`` stands in for ``frame.onnx`` when it is current (and the CUDA provider is not in use)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # else it looks up a Microsoft events host
    import onnxruntime as ort

    directory = Path(directory)
    # Idle intra-op threads must not spin: with several sessions on 2 cores (two halves, two models, the app's
    # visitors), each run's threads kept spinning through the next session's run. One LRCN clip after a ConvLSTM
    # clip took 133 ms with spinning, 44 without; alone 87 and 43 (docs/notebook/benchmarks.md).
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = onnx_providers()
    layouts = [(FRAME_FILE, HEAD_FILE), (ONNX_FILE,)]
    if int8 and providers == ["CPUExecutionProvider"]:  # on a CPU only: QDQ graphs on CUDA take slow paths
        layouts.insert(0, (INT8_FILE, HEAD_FILE))
    digest = None
    for names in layouts:
        if not all((directory / name).is_file() for name in names):
            continue
        digest = digest or keras_digest(directory)
        sessions = {}
        for name in names:
            session = _current_session(directory / name, options, providers, digest)
            if session is None:
                break
            sessions[name] = session
        else:
            return sessions
    return None


def _current_session(path: Path, options, providers: list[str], digest: str):
    """A session on ``path`` when it reads and was made from the ``model.keras`` of ``digest``; else None, with a
    warning saying why."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own error types for a damaged file
        log.warning("%s is unreadable (%s): not served", path, exc)
        return None
    if session.get_modelmeta().custom_metadata_map.get(DIGEST_KEY) != digest:
        log.warning("%s was not made from the present model.keras: not served (run `python -m har export --model %s` "
                    "to renew it)", path, path.parent)
        return None
    return session


def onnx_providers() -> list[str]:
    """ONNX Runtime's execution providers for a session: CUDA first when its provider is installed (the
    ``onnxruntime-gpu`` package on a machine with a GPU), then the CPU."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and gpu_present():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def gpu_present() -> bool:
    """An NVIDIA GPU on this machine (without importing TensorFlow): then TensorFlow serves, on the GPU."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def serving_sessions(directory: Path, runtime: str = "auto") -> dict | None:
    """The ONNX Runtime sessions to serve ``directory`` with (:func:`onnx_sessions`), or None for TensorFlow.

    ``auto`` (or the ``HAR_RUNTIME`` environment variable when set) serves ONNX when the directory has a current
    ONNX copy, ``onnxruntime`` is installed and no GPU is present, with the int8 per-frame half when that is current
    (twice as fast on a CPU, ``benchmark.json``); TensorFlow otherwise. ``onnx`` (the float halves) or ``onnx-int8``
    where that cannot be honoured is a :class:`ModelError`; ``keras`` is always TensorFlow."""
    if runtime == "auto":
        runtime = settings().runtime  # HAR_RUNTIME
    if checked_runtime(runtime) == "keras":
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        if runtime != "auto":
            raise ModelError("The onnx runtime needs the onnxruntime package: pip install -r requirements.txt.")
        return None
    if runtime == "auto" and gpu_present():
        return None
    sessions = onnx_sessions(directory, int8=runtime != "onnx")
    if sessions is None and runtime != "auto":
        raise ModelError(f"{Path(directory).name} has no usable ONNX copy ({FRAME_FILE} and {HEAD_FILE}, or "
                         f"{ONNX_FILE}) made from its model.keras: run `python -m har export --model {directory}`.")
    if runtime == "onnx-int8" and (sessions is None or INT8_FILE not in sessions):
        raise ModelError(f"{Path(directory).name} has no usable {INT8_FILE} made from its model.keras: run "
                         f"`python -m har export --model {directory} --data DATASET`.")
    return sessions

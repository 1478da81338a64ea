"""The ONNX copy of a model directory's ``model.keras``, for serving without TensorFlow.

``python -m har export --model lrcn`` (training does it too) writes it beside ``model.keras``, converted by Keras'
own exporter (tf2onnx) with time folded into the batch (:func:`har.serve.surgery.fold_time`) and convolutional
recurrences unrolled:

* a model that starts frame by frame (:func:`har.serve.surgery.split_per_frame`: both ImageNet presets) is written in
  its two halves, ``frame.onnx`` (uint8 frames ``(n, size, size, 3)`` -> per-frame features) and ``head.onnx``
  (features of windows ``(n, frames, ...)`` -> probabilities and logits). ONNX Runtime then serves a clip as the
  head over its frames' features, and a timeline computes each frame's features once, as TensorFlow does. There is
  no whole ``model.onnx`` beside them: the frame encoder (Lite0 at 128 px: 3.2 M values, 12.7 MB in float32) would be
  stored three times, and a model directory must stay within about 30 MB (its int8 per-frame half,
  ``frame.int8.onnx`` of :mod:`har.serve.quantize`, adds 3.4 MB: written with ``--data``);
* any other model is written whole, as ``model.onnx``.

Each file's metadata keeps the SHA-256 of the ``model.keras`` it was made from, so a model retrained since is never
served from a stale copy (:func:`har.serve.backends.onnx_sessions`). The export is checked before it is kept: ONNX
Runtime
and Keras must agree on real-looking clips to within ``TOLERANCE`` in every class probability (for halves, the head
run on ``frame.onnx``'s features), and ``frame.onnx``'s features must be Keras' to within ``FEATURE_TOLERANCE``.

Why: importing TensorFlow takes about 4 s of a command-line run; ONNX Runtime imports in 0.3 s. The app, which
loads once, and any machine with a GPU keep serving through TensorFlow (see
:func:`har.serve.backends.serving_sessions`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from har.errors import ModelError
from har.modeldir import MODEL_FILE, resolve_model_dir

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"  # the whole model, for a model that does not split in halves
FRAME_FILE = "frame.onnx"  # the per-frame half: uint8 frames (n, size, size, 3) -> features (n, ...) float32
HEAD_FILE = "head.onnx"  # the rest: features of windows (n, frames, ...) -> probabilities, logits (n, classes)
ONNX_FILES = (ONNX_FILE, FRAME_FILE, HEAD_FILE)
DIGEST_KEY = "har.keras_sha256"  # ONNX metadata: the model.keras this copy was made from
TOLERANCE = 1e-4  # largest difference in any class probability between the copy and the Keras model
# Largest difference in a per-frame feature, relative to the largest feature (at least 1): the answer is checked to
# TOLERANCE already; this keeps features read on their own (issue 17's open-set score) as Keras computes them.
FEATURE_TOLERANCE = 1e-3


def keras_digest(directory: Path) -> str:
    return hashlib.sha256((Path(directory) / MODEL_FILE).read_bytes()).hexdigest()


def export_onnx(model: str | os.PathLike) -> tuple[Path, ...]:
    """Write the ONNX copy of the model directory (or shipped name) ``model``: ``frame.onnx`` and ``head.onnx``
    for a model that splits in halves, ``model.onnx`` for one that does not; the other layout's files are removed.
    Returns the paths written. Raises :class:`ModelError` when the copy disagrees with the Keras model (nothing is
    written or removed then)."""
    from har.modeldir import load_model
    from har.serve.runtime import load_tensorflow
    from har.serve.surgery import fold_time, split_per_frame, with_logits

    load_tensorflow()
    directory = resolve_model_dir(model)
    net, config = load_model(directory)
    fold_time(net)  # one convolution over all frames instead of one per frame: 5x faster to export, faster to run
    net = with_logits(net) or net  # probabilities and the logits beside them (the open-set score reads them)
    for layer in net.layers:
        # A convolutional recurrence runs as an ONNX Loop whose every step pays for its convolutions' set-up: our
        # ConvLSTM took 29 ms a clip that way (Keras: 14), 11 ms unrolled into one static graph of its steps. An
        # LSTM over vectors is as fast either way, and smaller as a Loop.
        if type(layer).__name__.startswith("ConvLSTM"):
            layer.unroll = True
    rng = np.random.default_rng(0)
    probe = rng.integers(0, 256, (3, config.frames, config.size, config.size, 3), dtype=np.uint8)
    probe[1] = probe[1, :1]  # a still clip and a smooth one beside noise: motion paths see both extremes
    probe[2] = np.linspace(0, 255, config.frames, dtype=np.uint8)[:, None, None, None]
    expected, *expected_logits = _outputs(net(probe, training=False))
    flat = probe.reshape(-1, config.size, config.size, 3)  # (clips * frames, size, size, 3)
    halves = split_per_frame(net, config.size)
    if halves is not None:
        frame_model, head_model = halves
        features = np.asarray(frame_model(flat, training=False), np.float32)
        split = _outputs(head_model(features.reshape(*probe.shape[:2], *features.shape[1:]), training=False))[0]
        if not np.abs(split - expected).max() <= TOLERANCE:  # a graph we misread: export it whole
            log.warning("%s: the per-frame split disagrees with the model; exporting it whole", directory.name)
            halves = None
    graphs = {ONNX_FILE: net} if halves is None else {FRAME_FILE: halves[0], HEAD_FILE: halves[1]}
    digest = keras_digest(directory)
    tmps = {name: directory / f".{name}.{os.getpid()}.tmp" for name in graphs}
    try:
        sessions = {name: _converted(graph, tmps[name], digest) for name, graph in graphs.items()}
        if halves is None:
            got, *got_logits = run_onnx_outputs(sessions[ONNX_FILE], probe)
        else:
            got_features = run_onnx(sessions[FRAME_FILE], flat)
            off = float(np.abs(got_features - features).max()) / max(1.0, float(np.abs(features).max()))
            if not off <= FEATURE_TOLERANCE:
                raise ModelError(f"The ONNX copy of {directory.name}'s per-frame half differs from the Keras model's "
                                 f"by {off:.3g} of the largest feature (more than {FEATURE_TOLERANCE}); not kept.")
            got, *got_logits = run_onnx_outputs(sessions[HEAD_FILE],
                                                got_features.reshape(*probe.shape[:2], *got_features.shape[1:]))
        diff = float(np.abs(got - expected).max())
        if not diff <= TOLERANCE:
            raise ModelError(f"The ONNX copy of {directory.name} differs from the Keras model by {diff:.3g} in a "
                             f"class probability (more than {TOLERANCE}); not kept.")
        if len(got_logits) != len(expected_logits) or any(  # logits: within TOLERANCE of their largest
                not np.abs(g - e).max() <= TOLERANCE * max(1.0, float(np.abs(e).max()))
                for g, e in zip(got_logits, expected_logits, strict=False)):
            raise ModelError(f"The ONNX copy of {directory.name} gives other logits than the Keras model; not kept.")
        for name, tmp in tmps.items():
            os.replace(tmp, directory / name)
        for name in set(ONNX_FILES) - set(graphs):  # the other layout's, from an earlier export
            (directory / name).unlink(missing_ok=True)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    log.info("%s: wrote %s (largest difference from Keras %.2g)", directory.name, " and ".join(graphs), diff)
    return tuple(directory / name for name in graphs)


def _converted(graph, path: Path, digest: str):
    """Convert the Keras model ``graph`` to ONNX at ``path``, stamped with ``digest``; an ONNX Runtime session on
    it."""
    import onnx
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # else it looks up a Microsoft events host
    import onnxruntime as ort

    graph.export(str(path), format="onnx", verbose=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = DIGEST_KEY, digest
    onnx.save(proto, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(session, x: np.ndarray) -> np.ndarray:
    """The first output (probabilities), float32, of an ONNX Runtime session with one input, on ``x``."""
    return run_onnx_outputs(session, x)[0]


def run_onnx_outputs(session, x: np.ndarray) -> list[np.ndarray]:
    """Every output, float32, of an ONNX Runtime session with one input, on ``x``: probabilities, then logits for a
    copy exported with them."""
    return [np.asarray(out, np.float32) for out in session.run(None, {session.get_inputs()[0].name: x})]


def _outputs(result) -> list[np.ndarray]:
    """A Keras call's output(s) as a list of float32 arrays."""
    return [np.asarray(r, np.float32) for r in (result if isinstance(result, (list, tuple)) else [result])]

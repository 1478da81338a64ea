"""An ONNX copy of a model directory's ``model.keras``, for serving without TensorFlow.

``python -m har export --model lrcn`` (training does it too) writes ``model.onnx`` beside ``model.keras``: the same
graph with time folded into the batch (:func:`har.surgery.fold_time`) and convolutional recurrences unrolled,
converted by Keras' own exporter (tf2onnx).
Its metadata keeps the SHA-256 of the ``model.keras`` it was made from, so a model retrained since is never
served from a stale copy (:func:`har.backends.onnx_session`). The export is checked before it is kept: ONNX Runtime
and Keras must agree on real-looking clips to within ``TOLERANCE``.

Why: importing TensorFlow takes about 4 s of a command-line run; ONNX Runtime imports in 0.3 s. The app, which
loads once, and any machine with a GPU keep serving through TensorFlow (see :func:`har.backends.serving_session`).
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

ONNX_FILE = "model.onnx"
DIGEST_KEY = "har.keras_sha256"  # ONNX metadata: the model.keras this copy was made from
TOLERANCE = 1e-4  # largest difference in any class probability between the copy and the Keras model

def keras_digest(directory: Path) -> str:
    return hashlib.sha256((Path(directory) / MODEL_FILE).read_bytes()).hexdigest()


def export_onnx(model: str | os.PathLike) -> Path:
    """Write ``model.onnx`` for the model directory (or shipped name) ``model``; returns its path. Raises
    :class:`ModelError` when the copy disagrees with the Keras model (nothing is written then)."""
    import onnx
    import onnxruntime as ort

    from har.modeldir import load_model
    from har.runtime import load_tensorflow
    from har.surgery import fold_time

    load_tensorflow()
    directory = resolve_model_dir(model)
    net, config = load_model(directory)
    fold_time(net)  # one convolution over all frames instead of one per frame: 5x faster to export, faster to run
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
    expected = np.asarray(net(probe, training=False), np.float32)
    tmp = directory / f".{ONNX_FILE}.{os.getpid()}.tmp"
    try:
        net.export(str(tmp), format="onnx", verbose=False)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = DIGEST_KEY, keras_digest(directory)
        onnx.save(proto, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: probe})[0]
        diff = float(np.abs(got - expected).max())
        if not diff <= TOLERANCE:
            raise ModelError(f"The ONNX copy of {directory.name} differs from the Keras model by {diff:.3g} in a "
                             f"class probability (more than {TOLERANCE}); not kept.")
        os.replace(tmp, directory / ONNX_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s: wrote %s (largest difference from Keras %.2g)", directory.name, ONNX_FILE, diff)
    return directory / ONNX_FILE

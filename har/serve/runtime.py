"""Process-wide TensorFlow set-up shared by the CLI, the app and the benchmarks.

TensorFlow 2.21 prints C++ start-up lines (oneDNN, "could not find cuda drivers") straight to file descriptor 2
before its own log level applies; for a CLI whose errors are one ``error:`` line, and an app's logs, that is
noise. :func:`load_tensorflow` imports it with fd 2 silenced, then lets GPUs grow memory on demand so several
models (and the app's threads) can share one device. Nothing here pins work to the CPU: a GPU that TensorFlow
sees is used.
"""

from __future__ import annotations

import os
import sys


def load_tensorflow():
    """Import TensorFlow once, quietly; return the module. Real import errors still raise."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")  # probing CUDA prints "failed call to cuInit" on CPU hosts
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by the caller: keep its choice
            pass
    return tf


def device_name() -> str:
    """"gpu" when TensorFlow sees a GPU, else "cpu"."""
    tf = load_tensorflow()
    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"

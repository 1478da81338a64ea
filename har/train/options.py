"""A training run's options (:class:`TrainOptions`), their checks, and the network they describe.

No TensorFlow at import: the command line reads, merges and prints a recipe (:mod:`har.train.recipe`) without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from har.data.trainsets import frozen
from har.errors import HarError


@dataclass(frozen=True)
class TrainOptions:
    arch: str  # "lrcn" | "convlstm"
    data: Path  # folder per class
    out: Path  # model directory to write
    preset: str = "default"  # "default" | "tutorial" | "imagenet"
    epochs: int = 40  # length of the cosine schedule; early stopping may end sooner
    batch_size: int = 16
    lr: float = 1e-3  # peak learning rate (cosine decay after a short warm-up)
    warmup_epochs: int = 2
    patience: int = 10  # epochs without a better val_loss before stopping ...
    # ... counted only from this epoch on: while the learning rate is still high, validation swings are noise
    stop_from_epoch: int = 20
    weight_decay: float = 0.05  # AdamW, decoupled
    mixup: float = 0.0  # Beta(a, a) mixup of clip pairs within a batch (0: off)
    norm: str = "batch"  # our presets' normalisation: "batch" | "group"
    # Ship the average of the weights of the last N epochs (stochastic weight averaging, batch-norm statistics
    # recomputed on one augmented pass over the training clips) instead of the best-validation epoch; 0: the best.
    average_last: int = 0
    # After the validated phase, train a fresh model on training + validation groups for the best epoch's count
    # of epochs (same seed, same schedule) and ship it.
    refit: bool = False
    seed: int = 0
    validation: float = 0.15  # fraction of each class's groups
    test: float = 0.2
    frames: int = 20
    size: int = 64
    encoder: str = "lite0"  # imagenet preset: the frozen frame encoder (har.models.backbone variant) ...
    encoder_blocks: int = 8  # ... and how many of its MBConv blocks (16: the whole Lite0)
    # imagenet preset: besides whole clips, train on temporal crops from this many seconds to the whole clip (0: none)
    min_window_s: float = 0.0
    strategy: str = "auto"  # "auto" (one device: GPU if any), "mirrored" (all local GPUs), "multiworker", "cpu"
    resume: bool = False
    cache_dir: Path | None = None
    max_clips: int | None = None  # per split, for smoke tests only
    # What a run makes besides the model; a test that does not check them skips them (the config records it).
    export: bool = True  # the ONNX copy beside model.keras (without it the model is served by TensorFlow)
    openset: bool = True  # imagenet preset: the familiarity score from held-out heads (openset.npz)
    # imagenet preset: a folder per class of clips of *other* actions, none of the dataset's, that the open-set
    # score's gate learns from (har.openset.outliers); None: no gate
    others: Path | None = None


def check(opts: TrainOptions) -> None:
    """Raises :class:`HarError` for options that do not go together."""
    if frozen(opts) and not opts.encoder:
        raise HarError("The imagenet preset needs a frame encoder: give --encoder (lite0, lite1 or lite2).")
    if not 0 <= opts.average_last <= opts.epochs:
        raise HarError(f"--average-last {opts.average_last}: it must be between 0 and the number of epochs "
                       f"({opts.epochs}).")
    if frozen(opts) and opts.average_last:
        raise HarError("--average-last does not go with the imagenet preset: it trains on cached encoder features.")
    if opts.refit and opts.average_last:
        raise HarError("--refit and --average-last do not go together: the refit phase ships its last epoch.")


def built(opts: TrainOptions, classes: int):
    """A fresh ``keras.Model`` of ``opts``' architecture, preset, sampling and encoder, for ``classes`` classes."""
    from har.models import builders as models

    return models.build(opts.arch, opts.preset, classes, opts.frames, opts.size, opts.norm, opts.encoder,
                        opts.encoder_blocks)


def head_of(opts: TrainOptions, model, features):
    """The temporal part of ``model``'s architecture alone, on encoder maps shaped as ``features``' views."""
    from har.models import builders as models

    return models.temporal_head(opts.arch, tuple(features.shape[2:]), model.output.shape[-1])


def compiled(opts: TrainOptions, classes: int, features=None):
    """A fresh model of ``opts``' architecture, compiled for training (:func:`har.train.schedule.compile_for`): the
    temporal part alone when the run trains on cached ``features``."""
    from har.train.schedule import compile_for

    model = built(opts, classes)
    return compile_for(head_of(opts, model, features) if frozen(opts) else model, opts)

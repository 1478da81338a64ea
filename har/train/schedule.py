"""How a run learns: the learning-rate schedule, and the optimizer and loss a model is compiled with for it.

``opts`` is a :class:`har.train.options.TrainOptions`; the held-out open-set heads (:mod:`har.openset.heldout`)
learn on the same schedule as the run.
"""

from __future__ import annotations

import math


def lr_at(epoch: int, opts) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak over ``opts.epochs``: a pure function of the epoch,
    so a resumed run follows the same schedule."""
    if epoch < opts.warmup_epochs:
        return opts.lr * (epoch + 1) / (opts.warmup_epochs + 1)
    progress = (epoch - opts.warmup_epochs) / max(opts.epochs - opts.warmup_epochs, 1)
    return opts.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def compile_for(model, opts):
    """``model`` compiled for training with ``opts``' optimizer (AdamW) and loss (soft labels with mixup)."""
    import keras

    soft = opts.mixup > 0
    model.compile(
        optimizer=keras.optimizers.AdamW(opts.lr, weight_decay=opts.weight_decay),
        loss=keras.losses.CategoricalCrossentropy() if soft else keras.losses.SparseCategoricalCrossentropy(),
        metrics=[(keras.metrics.CategoricalAccuracy if soft else keras.metrics.SparseCategoricalAccuracy)(
            name="accuracy")],
    )
    return model


def scheduler(opts):
    """The Keras callback that sets each epoch's learning rate from :func:`lr_at`."""
    import keras

    return keras.callbacks.LearningRateScheduler(lambda epoch: lr_at(epoch, opts))

"""Where a training runs: the ``tf.distribute`` strategy, which worker of a cluster this process is, and the epoch
loop for several machines.

``--strategy multiworker`` runs the same program on every machine of a ``TF_CONFIG`` cluster
(``tf.distribute.MultiWorkerMirroredStrategy``, docs/training.md). Keras 3's ``Model.fit`` cannot drive that
strategy across more than one worker (keras-team/keras#20585): before the first step it averages a batch of clips
across workers, and after every step it reduces scalar metrics along an axis they do not have. Under that strategy
:func:`fit_across_workers` runs the epochs instead: the model's own ``train_step``/``test_step`` on every worker in
step, and the callbacks ``fit`` would call at each epoch.
"""

from __future__ import annotations

import logging
import os

import keras

from har.errors import HarError

log = logging.getLogger(__name__)


def pick_strategy(name: str):
    """A ``tf.distribute`` strategy: GPUs when TensorFlow sees them, else the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if name == "multiworker":  # one process per machine, the cluster described by TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        if not gpus:
            log.warning("--strategy mirrored: TensorFlow sees no GPU; MirroredStrategy runs on the CPU")
        return tf.distribute.MirroredStrategy()
    if name == "cpu" or not gpus:
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    return tf.distribute.OneDeviceStrategy("/gpu:0")


def is_multiworker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def cluster_of(strategy) -> tuple[int, int]:
    """``(this worker's index, number of workers)``: ``(0, 1)`` on one machine. Worker 0 is the chief, the one
    that writes the model (TF_CONFIG lists workers only, no separate chief task)."""
    resolver = strategy.cluster_resolver if is_multiworker(strategy) else None
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec:
        return 0, 1
    if set(spec) != {"worker"} or resolver.task_type != "worker":
        raise HarError(f"TF_CONFIG lists {sorted(spec)} and this task is a {resolver.task_type!r}: list every "
                       "machine under \"worker\" only (worker 0 writes the model) and give each the type \"worker\".")
    return int(resolver.task_id), len(spec["worker"])


def all_workers_here(strategy) -> None:
    """Wait until every worker of a multiworker strategy has got here (returns at once on one machine): a worker
    that leaves while another still works is reported to that one as crashed."""
    import tensorflow as tf

    if cluster_of(strategy)[1] > 1:
        strategy.reduce("SUM", tf.constant(1.0), axis=None)  # a collective: it returns once all have joined


def fit(model: keras.Model, strategy, dataset, validation=None, **kwargs) -> None:
    """``model.fit(dataset, validation_data=validation, **kwargs)`` under ``strategy``; under the multiworker
    strategy, :func:`fit_across_workers` (Keras 3's fit cannot drive it)."""
    verbose = 1 if os.isatty(2) else 2  # a progress bar on a terminal, one line per epoch in a log
    if is_multiworker(strategy):
        fit_across_workers(model, strategy, dataset, validation=validation, verbose=verbose, **kwargs)
    else:
        model.fit(dataset, validation_data=validation, verbose=verbose, **kwargs)


def fit_across_workers(model: keras.Model, strategy, train, *, epochs: int, initial_epoch: int = 0,
                       validation=None, callbacks=(), verbose: int = 2) -> None:
    """What ``model.fit(train, validation_data=validation, epochs=..., initial_epoch=..., callbacks=...)`` does,
    on every worker of a multiworker strategy at once (epoch-level callbacks: batch hooks get no logs).

    Each global batch of ``train`` is split across the workers (auto-sharding by data: the same shuffled order on
    every worker, each its share); the gradients are summed across them. Every worker validates on every clip
    (not sharded: a worker given an empty batch fails, our LSTM cannot take one). Metrics are read across
    workers, so every worker logs, stops early and checkpoints on the same figures: those of all the clips."""
    import tensorflow as tf

    def step(fn):
        return tf.function(lambda batch: strategy.run(fn, args=(batch,)))

    def results() -> dict[str, float]:
        # A metric's sums are variables synchronised on read: read in cross-replica context, they add up every
        # worker's, so the figures are the epoch's over every worker's clips.
        with strategy.scope():
            return {k: float(v) for k, v in model.get_metrics_result().items()}

    train_step, test_step = step(model.train_step), step(model.test_step)
    train_batches = strategy.experimental_distribute_dataset(train)
    if validation is not None:  # every worker's sums then cover all the clips: added up, their ratios stay
        whole = tf.data.Options()
        whole.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        validation = strategy.experimental_distribute_dataset(validation.with_options(whole))
    with strategy.scope():
        if not model.optimizer.built:  # its variables made here on every worker, not inside a traced step
            model.optimizer.build(model.trainable_variables)
    hooks = keras.callbacks.CallbackList(list(callbacks), add_progbar=verbose != 0, model=model, verbose=verbose,
                                         epochs=epochs, steps=None)
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        hooks.on_epoch_begin(epoch)
        for i, batch in enumerate(train_batches):
            hooks.on_train_batch_begin(i)
            train_step(batch)
            hooks.on_train_batch_end(i)
        logs = results()
        if validation is not None:
            model.reset_metrics()
            for batch in validation:
                test_step(batch)
            logs |= {f"val_{k}": v for k, v in results().items()}
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()

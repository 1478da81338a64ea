"""Graph surgery for serving, used by both the recognizer and the ONNX export; the saved model is never changed.

* :func:`fold_time` serves TimeDistributed layers with time folded into the batch (one convolution over all frames
  instead of one per frame).
* :func:`split_per_frame` cuts a model whose first half works frame by frame (a CNN per frame, then an LSTM or a
  ConvLSTM) into that half and the rest, so overlapping timeline windows compute each frame's features once.
  Whoever uses the halves checks them against the whole model first (:class:`har.serve.backends.KerasBackend` does, at
  load; :func:`har.serve.export.export_onnx` before it writes them).
"""

from __future__ import annotations

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


def _acts_per_frame(layer) -> bool:
    """True for a layer of ``_PER_FRAME``, or a BatchNormalization over the channels alone (at inference each
    frame's values are scaled by fixed statistics; one over another axis, e.g. time, tells frames apart)."""
    name = type(layer).__name__
    if name == "BatchNormalization":
        return layer.axis in (-1, len(layer.input.shape) - 1)
    return name in _PER_FRAME


def split_per_frame(model, size: int):
    """``(frame_model, head_model)`` when ``model`` starts with a chain of layers that act frame by frame (one
    of them TimeDistributed): ``frame_model`` maps uint8 frames ``(n, size, size, 3)`` to what the chain gives for
    each frame, a vector ``(n, dim)`` or maps ``(n, h, w, c)``; ``head_model`` maps those of windows
    ``(n, frames, ...)`` (the model's frames) to class probabilities (and logits, for a model made by
    :func:`with_logits`: every output of ``model``). The chain ends at the first layer that reads
    time (LSTM, ConvLSTM2D, Cropping1D, ...) and gives up trailing Dropouts to the head. A chain that starts with a
    frozen encoder (the imagenet presets) ends where training begins, so that the features are the frozen
    encoder's, whichever model serves them: the space of the cached training features (:mod:`har.data.features`) and of
    the open-set bank (:mod:`har.openset.score`). Our ImageNet LRCN is cut after "gap" (the encoder's maps pooled to
    ``(320,)`` at 128 px), the ConvLSTM after "encoder" (``(4, 4, 320)``; its trained batch norm and 1x1 "reduce"
    run in the head: about 7 % of its multiply-adds). The head is the rest of the graph, whatever its shape (our
    ImageNet LRCN branches there into each vector and its change from the previous frame).
    None for any other graph (a first layer that is already recurrent; a later layer that reads the frames
    themselves). The frame model runs the chain's own layers on windows of one frame, so every layer computes
    exactly as in the whole model. The caller checks that the halves agree."""
    import keras

    chain = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    cut = 0
    try:
        while (cut < len(chain) and _acts_per_frame(chain[cut])
               and (chain[cut].input is (model.inputs[0] if cut == 0 else chain[cut - 1].output))):
            cut += 1
    except (AttributeError, ValueError):  # a layer used more than once has no single input/output
        return None
    frozen = [i for i, layer in enumerate(chain[:cut]) if layer.weights and not layer.trainable_weights]
    if frozen:  # a frozen encoder: the half ends where training begins (the trained layers after it go to the head)
        cut = next((i for i in range(frozen[0], cut) if chain[i].trainable_weights), cut)
    while cut > 0 and type(chain[cut - 1]).__name__ == "Dropout":  # identity when serving: leave it to the head
        cut -= 1
    if cut == len(chain) or not any(type(x).__name__ == "TimeDistributed" for x in chain[:cut]):
        return None
    try:  # the graph from the per-frame output on; raises when a later layer also reads an earlier tensor
        head_model = keras.Model(chain[cut - 1].output, model.outputs if len(model.outputs) > 1 else model.outputs[0])
    except ValueError:
        return None
    feature_shape = tuple(chain[cut - 1].output.shape[2:])  # one frame's: (dim,) or (h, w, c)
    inputs = keras.Input((size, size, 3), dtype="uint8")
    x = keras.layers.Reshape((1, size, size, 3))(inputs)  # (n, 1, size, size, 3): windows of one frame
    for layer in chain[:cut]:
        x = layer(x)  # same layers, same weights
    return keras.Model(inputs, keras.layers.Reshape(feature_shape)(x)), head_model


def with_logits(model):
    """``model`` with a second output, the logits its last layer turns into probabilities: for a model that ends
    in a softmax Dense named "probs" (every model ``har.models.builders`` builds), a model over the same layers whose
    outputs
    are ``[probs, logits]`` (a linear Dense sharing those weights beside it); None for any other. The open-set score
    reads the logits' log-sum-exp, which probabilities alone no longer carry (:mod:`har.openset.score`)."""
    import keras

    try:
        last = model.get_layer("probs")
    except ValueError:
        return None
    if type(last).__name__ != "Dense" or getattr(last.activation, "__name__", "") != "softmax":
        return None
    dense = keras.layers.Dense(last.units, dtype="float32", name="logits")
    logits = dense(last.input)
    dense.set_weights(last.get_weights())
    return keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, [model.outputs[0], logits])

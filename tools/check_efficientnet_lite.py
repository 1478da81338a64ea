"""Check a conversion two ways: the whole EfficientNet-Lite (head and classifier included) built by
``har.models.backbone``
from an archive made with ``tools/convert_efficientnet_lite.py --variant V --blocks ALL --head --out FULL.npz``

1. names one frame of a clip per class: a correct conversion says *violin* for PlayingViolin and *grand/upright
   piano* for PlayingPiano among its first answers; wrong padding, layout or scaling does not;
2. agrees numerically with the PyTorch model of the same checkpoint (``efficientnet-lite-pytorch`` 0.1.0, the
   port's own model code, installed with ``pip install --no-deps``) on the same frames: logits and the features
   after the head convolution, largest absolute difference printed (``--no-torch`` skips this part).

    python tools/check_efficientnet_lite.py FULL.npz [--variant lite0] [--size 224] [--data ../shared/data/ucf101-6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from har.models.backbone import OFFSET, SCALE, encoder, load_imagenet, num_blocks  # noqa: E402

# ImageNet-1k indices of the labels that fit our classes (the others print as numbers).
NAMES = {430: "basketball", 579: "grand piano", 881: "upright piano", 889: "violin", 486: "cello", 339: "sorrel",
         978: "seashore", 974: "geyser", 693: "paddle", 402: "acoustic guitar"}


def frames(data: Path, size: int) -> tuple[list[str], np.ndarray]:
    """Frame 30 of the sixth clip of each class outside the shipped split's test groups (seed 0, never read),
    RGB ``(classes, size, size, 3)`` uint8."""
    from har.data.dataset import group_of, index_dataset, split_groups

    test = set(split_groups(index_dataset(data), seed=0)["test"])
    names, out = [], []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        clip = [c for c in sorted(folder.glob("*.mp4")) if group_of(c, folder.name) not in test][5]
        cap = cv2.VideoCapture(str(clip))
        cap.set(cv2.CAP_PROP_POS_FRAMES, 30)
        ok, frame = cap.read()
        cap.release()
        if not ok:
            continue
        names.append(f"{folder.name} ({clip.name})")
        out.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA))
    return names, np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("--variant", default="lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ucf101-6"))
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    net = encoder(num_blocks(args.variant), args.size, head=True, variant=args.variant)
    load_imagenet(net, args.archive)
    names, rgb = frames(args.data, args.size)
    x = rgb.astype(np.float32) * SCALE + OFFSET
    logits = net.predict(x, verbose=0)
    for name, row in zip(names, logits, strict=True):
        top = ", ".join(NAMES.get(int(i), str(int(i))) for i in np.argsort(-row)[:5])
        print(f"{name}: {top}")
    if args.no_torch:
        return
    import keras
    import torch
    from convert_efficientnet_lite import checkpoint_path
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name(f"efficientnet-{args.variant}", image_size=args.size)
    ref.load_state_dict(torch.load(checkpoint_path(args.variant), map_location="cpu"))
    ref.eval()
    with torch.no_grad():
        t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        t_feat = ref.extract_features(t).numpy().transpose(0, 2, 3, 1)
        t_logits = ref(t).numpy()
    k_feat = keras.Model(net.input, net.get_layer("head_relu").output).predict(x, verbose=0)
    same5 = sum(set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5]) for a, b in zip(t_logits, logits, strict=True))
    print(f"PyTorch vs Keras, {len(x)} frames at {args.size} px: head features max |diff| "
          f"{np.abs(t_feat - k_feat).max():.2e} (max |value| {np.abs(t_feat).max():.1f}), logits max |diff| "
          f"{np.abs(t_logits - logits).max():.2e} (max |value| {np.abs(t_logits).max():.1f}), same top-1 on "
          f"{int((t_logits.argmax(1) == logits.argmax(1)).sum())}/{len(x)}, same top-5 sets on "
          f"{same5}/{len(x)}")


if __name__ == "__main__":
    main()

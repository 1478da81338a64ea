"""Check a conversion on ImageNet labels: the whole EfficientNet-Lite0 (head included) built by ``har.backbone``
from an archive made with ``tools/convert_efficientnet_lite0.py --blocks 16 --head --out FULL.npz`` names one
frame of a clip per class. A correct conversion says *violin* for PlayingViolin and *grand/upright piano* for
PlayingPiano among its first answers; wrong padding, layout or scaling does not.

    python tools/check_efficientnet_lite0.py FULL.npz [--data ../shared/data/ucf101-6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from har.backbone import OFFSET, SCALE, encoder, load_imagenet  # noqa: E402

# ImageNet-1k indices of the labels that fit our classes (the others print as numbers).
NAMES = {430: "basketball", 579: "grand piano", 881: "upright piano", 889: "violin", 486: "cello", 339: "sorrel",
         978: "seashore", 974: "geyser", 693: "paddle", 402: "acoustic guitar"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ucf101-6"))
    args = parser.parse_args()
    net = encoder(16, 224, head=True)
    load_imagenet(net, args.archive)
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        clip = sorted(folder.glob("*.mp4"))[5]
        cap = cv2.VideoCapture(str(clip))
        cap.set(cv2.CAP_PROP_POS_FRAMES, 30)
        ok, frame = cap.read()
        if not ok:
            continue
        rgb = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_AREA)
        logits = net.predict(rgb[None].astype(np.float32) * SCALE + OFFSET, verbose=0)[0]
        top = ", ".join(NAMES.get(int(i), str(int(i))) for i in np.argsort(-logits)[:5])
        print(f"{folder.name} ({clip.name}): {top}")


if __name__ == "__main__":
    main()

"""Sampling speed: har.media.video.sample_clip (one sequential pass) vs the seek-per-frame recipe, on the shared clips.

    python benchmarks/bench_sampling.py [--data ../shared/data/ucf101-6] [--clips 120] [--frames 20]

The seek recipe is the original write-ups': for each of 20 frames, ``set(CAP_PROP_POS_FRAMES)`` then ``read()``,
resize and BGR->RGB. Both run on the same clips in the same process, alternating, so machine noise hits both;
the script also reports how often the seek recipe returned a different frame than asked for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from har.media.video import sample_clip, sample_indices, to_model_frame  # noqa: E402


def seek_recipe(path: Path, frames: int = 20, size: int = 64) -> np.ndarray:
    """The original recipe: one seek + read per sampled frame, indices ``i * max(count // frames, 1)``."""
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    skip = max(count // frames, 1)
    out = []
    for i in range(frames):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i * skip)
        ok, img = cap.read()
        if not ok:
            break
        out.append(to_model_frame(img, size))
    cap.release()
    return np.stack(out)


def seek_exact(path: Path, indices: np.ndarray, size: int = 64) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    for i in indices:
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
        ok, img = cap.read()
        out.append(to_model_frame(img, size) if ok else None)
    cap.release()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ucf101-6"))
    ap.add_argument("--clips", type=int, default=120, help="clips to time (spread over the classes)")
    ap.add_argument("--frames", type=int, default=20)
    args = ap.parse_args()

    paths = sorted(Path(args.data).rglob("*.mp4"))
    paths = paths[:: max(len(paths) // args.clips, 1)][: args.clips]
    ours, seek = [], []
    wrong = 0
    for p in paths:  # alternate the two on each clip so noise hits both alike
        t = time.perf_counter()
        clip = sample_clip(p, args.frames)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        seek_recipe(p, args.frames)
        seek.append(time.perf_counter() - t)
        # does seeking land on the frame it asked for? compare with our exact frames at the same indices
        got = seek_exact(p, sample_indices(int(cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT)), args.frames))
        wrong += sum(g is None or not np.array_equal(g, c) for g, c in zip(got, clip, strict=True))

    def row(name, xs):
        return f"| {name:<34} | {1000 * statistics.mean(xs):8.1f} | {1000 * statistics.median(xs):8.1f} |"

    print(f"{len(paths)} clips from {args.data}, {args.frames} frames each, 64x64")
    print(f"| {'method':<34} | {'mean ms':>8} | {'p50 ms':>8} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 10}|")
    print(row("seek per frame (original recipe)", seek))
    print(row("har.media.video.sample_clip (one pass)", ours))
    print(f"speed-up (mean): {statistics.mean(seek) / statistics.mean(ours):.1f}x; "
          f"(median): {statistics.median(seek) / statistics.median(ours):.1f}x")
    print(f"frames where seeking returned another frame than the one asked for: {wrong} of "
          f"{len(paths) * args.frames}")


if __name__ == "__main__":
    main()

"""What Explain costs, and that recognition without it costs what it did.

    python benchmarks/bench_explain.py [--runs 5]

For each shipped model, served as the app serves it (``runtime="auto"``), on the six example clips: the time of
``classify`` (the plain path: sampling and one forward pass) before any explanation, the time of ``explain``
(occlusion: one batch of 21 clips; Grad-CAM: TensorFlow's gradients, the Keras model loaded on first use when ONNX
Runtime serves), and ``classify`` again after it, interleaved clip by clip in one process. The ratio
after / before says whether explaining slows the plain path down (target: about 1, within the machine's noise);
the plain path itself never calls anything of ``har.evaluation.explain``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from har import Recognizer  # noqa: E402
from har.evaluation.explain import explain  # noqa: E402


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="classify runs per clip, before and after")
    args = ap.parse_args()
    clips = sorted((REPO / "examples").glob("v_*.mp4"))
    print("| model | runtime | classify p50 s, before | explain, first call s | explain p50 s | classify p50 s, "
          "after | after / before |\n|---|---|---:|---:|---:|---:|---:|")
    for name in ("lrcn", "convlstm"):
        rec = Recognizer(name, runtime="auto")
        before = [timed(rec.classify, c) for _ in range(args.runs) for c in clips]
        first = timed(explain, rec, clips[0])
        explains = [timed(explain, rec, c) for c in clips]
        after = [timed(rec.classify, c) for _ in range(args.runs) for c in clips]
        b, a = statistics.median(before), statistics.median(after)
        print(f"| {name} | {rec.runtime} | {b:.3f} | {first:.2f} | {statistics.median(explains):.2f} | {a:.3f} | "
              f"{a / b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

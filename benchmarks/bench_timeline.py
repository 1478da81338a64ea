"""How well a timeline finds the actions of a montage: segment F1 at IoU 0.5, boundary error, short pieces.

    python benchmarks/bench_timeline.py [--groups test|validation] [--montages 30] [--seed 0] [--write]
    python benchmarks/bench_timeline.py --groups validation --window-s 3 --hop-s 0.5   # other settings

Montages are built from the shipped split's ``--groups`` only (test by default: groups no model saw in training
or selection; validation to choose settings), each of 6 pieces of random classes cut to random lengths of 2-10 s
(:mod:`har.montage`, seeded: the same montages on every run). Each shipped model's timeline runs with its own
settings (window and hop of its config, the app's smoothing), both models from one decoding pass, and its
segments are scored against the truth. With ``--write`` (test groups only) the figures go to each model's
``timeline.json``, which the dashboard shows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from har import Recognizer, analyze  # noqa: E402
from har.data import clips_of, index_dataset  # noqa: E402
from har.montage import build, score, summarize  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "ucf101-6"
MODELS = ("lrcn", "convlstm")
TIMELINE_FILE = "timeline.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", choices=("test", "validation"), default="test")
    ap.add_argument("--montages", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--window-s", type=float, default=None, help="timeline window (default: each model's)")
    ap.add_argument("--hop-s", type=float, default=None, help="timeline hop (default: each model's)")
    ap.add_argument("--write", action="store_true", help="store the figures in models/*/timeline.json")
    args = ap.parse_args()
    if args.write and (args.groups != "test" or args.window_s or args.hop_s):
        ap.error("--write stores test-group figures of the models' own settings only")
    recs = [Recognizer(m, runtime="auto") for m in MODELS]
    split = recs[0].config.split
    assert all(r.config.split == split for r in recs), "the shipped models must share their split"
    index = index_dataset(args.data)
    clips = clips_of(index, split[args.groups])
    scores: dict[str, list[dict]] = {r.name: [] for r in recs}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="har-montage-") as work:
        for m in range(args.montages):
            path = Path(work) / f"montage{m:03d}.avi"
            truth = build(clips, path, seed=args.seed * 100_000 + m)
            for name, a in analyze(path, recs, window_s=args.window_s, hop_s=args.hop_s).items():
                scores[name].append(score(truth, a.timeline.segments))
            path.unlink()
    seconds = time.perf_counter() - t0
    print(f"{args.montages} montages of 6 pieces from the {args.groups} groups ({len(clips)} clips), "
          f"{seconds:.0f} s\n")
    print("| model | window s | hop s | segments | predicted | F1 @ IoU 0.5 | precision | recall | mean boundary "
          "error s | 2-3 s pieces found |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in recs:
        s = summarize(scores[r.name])
        window, hop = args.window_s or r.config.window_s, args.hop_s or r.config.hop_s
        print(f"| {r.name} | {window:g} | {hop:g} | {s['segments']} | {s['predicted']} | "
              f"{s['f1']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['mean_boundary_error_s']:.2f} | "
              f"{s['short_recall']:.0%} of {s['short_pieces']} |")
        if args.write:
            record = {"timeline": {"window_s": r.config.window_s, "hop_s": r.config.hop_s,
                                   "smoothing": "runs under 2 s merged into a neighbour"},
                      "montage_set": {"groups": args.groups, "count": args.montages, "pieces": 6,
                                   "piece_s": [2.0, 10.0], "seed": args.seed},
                      **s, "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            (REPO / "models" / r.name / TIMELINE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

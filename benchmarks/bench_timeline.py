"""How well a timeline finds the actions of a montage: segment F1 at IoU 0.5, boundary error, short pieces.

    python benchmarks/bench_timeline.py [--groups test|validation] [--montages 30] [--seed 0] [--write]
    python benchmarks/bench_timeline.py --groups validation --window-s 3 --hop-s 0.5 --penalty 1   # other settings
    python benchmarks/bench_timeline.py --groups validation --grid [--windows 2 2.5 3 4] [--penalties 0.5 1 2 4]

Montages are built from the shipped split's ``--groups`` only (test by default: groups no model saw in training
or selection; validation to choose settings), each of 6 pieces of random classes cut to random lengths of 2-10 s
(:mod:`har.data.montage`, seeded: the same montages on every run). Both shipped models run from one decoding pass per
window and hop, and their segments are scored against the truth, in rows:

* ``before``: the timeline before issue 18, the model's config window and hop (7.24 s every 1 s), per-second
  labels with runs under 2 s merged into a neighbour (:func:`har.serve.segments.merge_short_runs`);
* ``decoder``: the same windows through the Viterbi decoder (the decoder's own effect);
* ``after``: the timeline as it ships (:func:`har.serve.timeline.settings`, :data:`har.serve.timeline.SWITCH_PENALTY`),
or
  with ``--window-s`` / ``--hop-s`` / ``--penalty``;
* with ``--grid`` (validation groups only), every window of ``--windows`` at hop ``--hop-s`` (0.5) and every
  penalty of ``--penalties`` instead of ``after`` (one pass per window; the penalties re-decode its windows).

With ``--write`` (test groups, shipped settings only) each model's ``timeline.json`` gets the ``after`` figures
and, under ``before``, the baseline's: the dashboard shows both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from har import UNCERTAIN, Recognizer, analyze  # noqa: E402
from har.data.dataset import clips_of, index_dataset  # noqa: E402
from har.data.montage import build, score, summarize  # noqa: E402
from har.serve.segments import MIN_SEGMENT_S, decode, merge_short_runs  # noqa: E402
from har.serve.timeline import SWITCH_PENALTY, settings  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "ucf101-6"
MODELS = ("lrcn", "convlstm")
TIMELINE_FILE = "timeline.json"
PIECES, PIECE_S = 6, (2.0, 10.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", choices=("test", "validation"), default="test")
    ap.add_argument("--montages", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--window-s", type=float, default=None, help="timeline window (default: each model's)")
    ap.add_argument("--hop-s", type=float, default=None, help="timeline hop (default: each model's; grid: 0.5)")
    ap.add_argument("--penalty", type=float, default=None, help=f"switching penalty (default {SWITCH_PENALTY:g})")
    ap.add_argument("--grid", action="store_true", help="every window of --windows and penalty of --penalties")
    ap.add_argument("--windows", type=float, nargs="+", default=[2.0, 2.5, 3.0, 4.0])
    ap.add_argument("--penalties", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--write", action="store_true", help="store the figures in models/*/timeline.json")
    args = ap.parse_args()
    if args.write and (args.groups != "test" or args.grid or args.window_s or args.hop_s or args.penalty is not None):
        ap.error("--write stores test-group figures of the shipped settings only")
    if args.grid and (args.groups != "validation" or args.window_s):
        ap.error("--grid chooses settings on the validation groups only, over --windows")
    recs = [Recognizer(m, runtime="auto") for m in MODELS]
    split = recs[0].config.split
    assert all(r.config.split == split for r in recs), "the shipped models must share their split"
    clips = clips_of(index_dataset(args.data), split[args.groups])
    # (model, row name, window, hop, penalty) -> the montages' scores
    scores: dict[tuple, list[dict]] = defaultdict(list)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="har-montage-") as work:
        for m in range(args.montages):
            path = Path(work) / f"montage{m:03d}.avi"
            truth = build(clips, path, seed=args.seed * 100_000 + m, pieces=PIECES, min_s=PIECE_S[0],
                          max_s=PIECE_S[1])
            for key, segments in runs(path, recs, args):
                scores[key].append({**score(truth, segments),
                                    "unknown": sum(s.label == UNCERTAIN for s in segments)})
            path.unlink()
    print(f"{args.montages} montages of {PIECES} pieces from the {args.groups} groups ({len(clips)} clips), "
          f"{time.perf_counter() - t0:.0f} s\n")
    print("| model | timeline | window s | hop s | penalty | segments | predicted (unknown) | F1 @ IoU 0.5 | "
          "precision | recall | mean boundary error s | 2-3 s pieces found |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, row, window, hop, penalty), got in scores.items():
        s = summarize(got)
        print(f"| {name} | {row} | {window:g} | {hop:g} | {'—' if penalty is None else f'{penalty:g}'} | "
              f"{s['segments']} | {s['predicted']} ({sum(g['unknown'] for g in got)}) | {s['f1']:.3f} | "
              f"{s['precision']:.3f} | {s['recall']:.3f} | {s['mean_boundary_error_s']:.2f} | "
              f"{s['short_recall']:.0%} of {s['short_pieces']} |")
    if args.write:
        for r in recs:
            write(r, {row: (key, {**summarize(got), "unknown_segments": sum(g["unknown"] for g in got)})
                      for key, got in scores.items() if key[0] == r.name for row in [key[1]]}, args)
    return 0


def runs(path: Path, recs: list[Recognizer], args: argparse.Namespace):
    """``((model, row, window, hop, penalty), segments)`` of every row on one montage: one decoding pass per
    window and hop (for the models that need it); penalties re-decode the pass's windows."""
    hop = args.hop_s or 0.5
    wanted = {r.name: {(r.config.whole_clip_window_s, r.config.whole_clip_hop_s)} for r in recs}
    for r in recs:
        wanted[r.name] |= {(w, hop) for w in args.windows} if args.grid else \
            {settings(r.config, args.window_s, args.hop_s)}
    timelines = {}  # (model, window, hop) -> Timeline
    for setting in sorted(set().union(*wanted.values())):
        group = [r for r in recs if setting in wanted[r.name]]
        for r, a in zip(group, analyze(path, group, window_s=setting[0], hop_s=setting[1]).values(), strict=True):
            timelines[(r.name, *setting)] = a.timeline
    penalty = SWITCH_PENALTY if args.penalty is None else args.penalty
    for r in recs:
        window, config_hop = r.config.whole_clip_window_s, r.config.whole_clip_hop_s
        tl = timelines[r.name, window, config_hop]
        yield (r.name, "before", window, config_hop, None), merge_short_runs(tl.probs, tl.duration_s, tl.classes,
                                                                             r.uncertain_below)
        rows = [("decoder", window, config_hop, SWITCH_PENALTY)]
        rows += [("grid", w, hop, p) for w in args.windows for p in args.penalties] if args.grid else \
            [("after", *settings(r.config, args.window_s, args.hop_s), penalty)]
        for row, w, h, p in rows:
            t = timelines[r.name, w, h]
            yield (r.name, row, w, h, p), decode(t.step_probs, t.step_s, t.duration_s, t.classes, r.uncertain_below,
                                                 p, t.unknown)


def write(rec: Recognizer, rows: dict[str, tuple[tuple, dict]], args: argparse.Namespace) -> None:
    """``models/NAME/timeline.json``: the shipped timeline's figures, the baseline's under ``before``."""
    (_, _, window, hop, _), before = rows["before"]
    (_, _, window_after, hop_after, penalty), after = rows["after"]
    step = min(hop_after, 1.0)
    montage_set = {"groups": args.groups, "count": args.montages, "pieces": PIECES, "piece_s": list(PIECE_S),
                   "seed": args.seed}
    record = {
        "timeline": {"window_s": window_after, "hop_s": hop_after, "penalty": penalty,
                     "decoder": f"Viterbi over {step:g} s steps, switching penalty {penalty:g}"},
        "montage_set": montage_set, **after,
        "before": {"timeline": {"window_s": window, "hop_s": hop,
                                "smoothing": f"runs under {MIN_SEGMENT_S:g} s merged into a neighbour"},
                   "montage_set": montage_set, **before},
        "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (REPO / "models" / rec.name / TIMELINE_FILE).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())

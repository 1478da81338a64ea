"""The shipped models' open-set behaviour, measured; ``--write`` stores it as ``models/NAME/openset.json``.

* Operating point (the shipped threshold), with each model served as the app serves it (``--runtime``, default
  ``auto``): the share of the known test-group clips rejected ("none of the known actions"), test accuracy with a
  rejected clip counted wrong beside the accuracy without the open-set score, and the share of the three wild
  videos' seconds flagged by the app's timeline.
* ROC of the familiarity score and of the top probability (the max-softmax baseline): known test clips against
  the wild videos' timeline windows.
* Clips of other actions, leave-other-class-out: the figures the score's fit measured on the non-test groups
  (``config.json``'s ``openset.leave_other_class_out``: for each of the other-action classes, a gate fitted without
  it and without each known group fold scores them; :mod:`har.openset.outliers`), copied here with their provenance.
* Calibration of the top probability on the test groups (reliability, expected calibration error).

The wild videos are only scored here, never fitted on. Test groups are read here, once per shipped model.

    python benchmarks/bench_openset.py [--models lrcn convlstm] [--runtime auto] [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"


def measure(name: str, runtime: str) -> dict:
    import har
    from har.config import ModelConfig
    from har.data.dataset import clips_of, index_dataset
    from har.modeldir import resolve_model_dir
    from har.openset.report import auroc, calibration, roc
    from har.serve.results import UNCERTAIN

    directory = resolve_model_dir(name)
    config = ModelConfig.load(directory)
    rec = har.Recognizer(directory, runtime=runtime)
    fam = rec.familiarity  # as served (the int8 half's offsets applied)
    if fam is None:
        raise SystemExit(f"{directory} has no open-set score (openset.npz) to serve: nothing to measure")
    index = index_dataset(DATA / config.data)
    test = clips_of(index, config.split["test"])
    y = index.labels(test)
    started = time.perf_counter()
    preds = [rec.classify(c.path) for c in test]
    probs = np.stack([p.probs for p in preds])
    known_fam = np.array([p.familiarity for p in preds])
    rejected = np.array([p.uncertain for p in preds])
    right = probs.argmax(1) == y

    wild = sorted((DATA / "wild").glob("*.mp4"))
    videos, window_fam, window_top = [], [], []
    window_s = hop_s = None
    for path in wild:
        t = rec.timeline(path)
        window_s, hop_s = t.window_s, t.hop_s
        flagged = sum(min(s.end_s, t.duration_s) - s.start_s for s in t.segments if s.label == UNCERTAIN)
        videos.append({"video": path.name, "seconds": round(t.duration_s, 1), "flagged_s": round(flagged, 1),
                       "windows": len(t.window_starts),
                       "windows_flagged": int(np.sum(t.window_familiarity < fam.window_threshold))})
        window_fam.append(t.window_familiarity)
        window_top.append(t.window_probs.max(axis=1))
    window_fam, window_top = np.concatenate(window_fam), np.concatenate(window_top)
    seconds = sum(v["seconds"] for v in videos)
    others = fam.info.get("leave_other_class_out")
    return {
        "model": name, "method": {k: v for k, v in fam.info.items() if k != "leave_other_class_out"},
        "runtime": rec.runtime, "precision": rec.precision, "clips": len(test),
        "seconds_to_measure": round(time.perf_counter() - started, 1),
        "operating_point": {
            "threshold": fam.threshold, "known_rejected": round(float(rejected.mean()), 4),
            "known_unfamiliar": round(float(np.mean([p.unfamiliar for p in preds])), 4),
            "accuracy": round(float(right.mean()), 4),
            "accuracy_with_rejection": round(float(np.mean(right & ~rejected)), 4),
            "wild_seconds_flagged": round(sum(v["flagged_s"] for v in videos) / seconds, 4),
            "wild_windows_flagged": round(float(np.mean(window_fam < fam.window_threshold)), 4)},
        "wild": {"videos": videos, "auroc": round(auroc(known_fam, window_fam), 4),
                 "auroc_top": round(auroc(probs.max(1), window_top), 4),
                 "roc": roc(known_fam, window_fam), "roc_top": roc(probs.max(1), window_top),
                 "window_s": window_s, "hop_s": hop_s},
        **({"other_actions": {**others, **fam.info.get("others", {}),
                              "protocol": "leave-other-class-out on the non-test groups"}} if others else {}),
        "calibration": calibration(probs, y),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lrcn", "convlstm"])
    ap.add_argument("--runtime", default="auto", help="how the models are served (har.settings.RUNTIMES)")
    ap.add_argument("--write", action="store_true", help="store models/NAME/openset.json")
    args = ap.parse_args()
    from har.modeldir import resolve_model_dir
    from har.openset.score import OPENSET_REPORT

    for name in args.models:
        rep = measure(name, args.runtime)
        op, other = rep["operating_point"], rep.get("other_actions", {}).get("mean", {})
        print(f"{name}: known test clips rejected {op['known_rejected']:.1%}, accuracy {op['accuracy']:.1%} -> "
              f"{op['accuracy_with_rejection']:.1%} with rejection; wild seconds flagged "
              f"{op['wild_seconds_flagged']:.1%}, windows {op['wild_windows_flagged']:.1%}; AUROC known vs wild "
              f"windows {rep['wild']['auroc']:.3f} (top probability {rep['wild']['auroc_top']:.3f}); other actions "
              f"left out: AUROC {other.get('auroc', np.nan):.3f}, flagged {other.get('flagged', np.nan):.1%}"
              f"; ECE {rep['calibration']['ece']:.3f}", flush=True)
        for row in rep.get("other_actions", {}).get("per_class", []):
            print("   ", json.dumps(row))
        for v in rep["wild"]["videos"]:
            print("   ", json.dumps(v))
        if args.write:
            (resolve_model_dir(name) / OPENSET_REPORT).write_text(json.dumps(rep, indent=1) + "\n")


if __name__ == "__main__":
    main()

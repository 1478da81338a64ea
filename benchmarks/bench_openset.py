"""Issue 17: the shipped models' open-set behaviour, measured; ``--write`` stores it as ``models/NAME/openset.json``.

* Operating point (the shipped threshold, set on held-out non-test clips): share of the known test-group clips rejected
  ("none of the known actions"), test accuracy with a rejected clip counted wrong beside the accuracy without the
  open-set score, and the share of the three wild videos' seconds flagged by the app's timeline.
* ROC of the familiarity score and of the top probability (the max-softmax baseline): known test clips against
  the wild videos' timeline windows.
* Leave-one-class-out, per the issue's protocol: for each class, a head trained with the shipped recipe on the other
  five classes' non-test clips and its familiarity fitted as shipped (bank: their non-test clips; scales and
  threshold: their non-test clips scored held out by four fold heads and banks); knowns: their test-group clips;
  unknowns: every clip of the left-out class and the wild videos' windows. AUROC, knowns rejected, unknowns caught.
  Five heads per class: about 8 minutes for the LRCN on this CPU, 45 for the ConvLSTM.
* Calibration of the top probability on the test groups (reliability, expected calibration error).

The wild videos are only scored here, never fitted on. Test groups are read here, once per shipped model.

    python benchmarks/bench_openset.py [--models lrcn convlstm] [--write]
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


def wild_windows(path: Path, encoder, size: int, frames: int, window_s: float, hop_s: float) -> np.ndarray:
    """Per-frame features ``(windows, frames, h, w, C)`` of every window of ``path``, as the timeline samples them
    (a grid of ``window_s / frames`` s, windows every ``hop_s``)."""
    from har.media.video import iter_frames

    step = window_s / frames
    grid = np.stack([f.image for f in iter_frames(path, size, every_s=step)])
    feats = encoder.predict(grid, batch_size=64, verbose=0)
    hop = max(int(round(hop_s / step)), 1)
    starts = range(0, max(len(grid) - frames, 0) + 1, hop)
    return np.stack([feats[s : s + frames] for s in starts]).astype(np.float16)


def measure(name: str, cache: Path) -> dict:
    import har
    from har.config import ModelConfig
    from har.data.dataset import clips_of, index_dataset
    from har.data.features import features_of, frame_encoder
    from har.modeldir import resolve_model_dir
    from har.openset.report import auroc, calibration, roc
    from har.openset.score import Familiarity, describe
    from har.serve.results import UNCERTAIN

    directory = resolve_model_dir(name)
    config = ModelConfig.load(directory)
    fam = Familiarity.load(directory)
    if fam is None:
        raise SystemExit(f"{directory} has no open-set score (openset.npz): nothing to measure")
    rec = har.Recognizer(directory, runtime="keras")
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
                       "windows_flagged": int(np.sum(t.window_familiarity < fam.threshold))})
        window_fam.append(t.window_familiarity)
        window_top.append(t.window_probs.max(axis=1))
    window_fam, window_top = np.concatenate(window_fam), np.concatenate(window_top)
    seconds = sum(v["seconds"] for v in videos)

    model = rec.keras_model
    encoder = frame_encoder(model)
    x = {s: features_of(clips_of(index, config.split[s]), model, config.sampling, config.min_window_s, cache,
                        desc=f"{s} features") for s in ("train", "validation", "test")}
    labels = {s: index.labels(clips_of(index, config.split[s])) for s in x}
    groups = {s: [c.group for c in clips_of(index, config.split[s])] for s in x}
    wild_x = np.concatenate([wild_windows(p, encoder, config.size, config.frames, window_s, hop_s) for p in wild])
    wild_raw = describe(wild_x)
    loco = leave_one_class_out(config, x, labels, groups, index.classes, wild_raw, wild_x, cache)
    mean = {k: round(float(np.mean([r[k] for r in loco])), 4) for k in loco[0] if k not in ("left_out", "seconds")}
    return {
        "model": name, "method": fam.info, "clips": len(test), "seconds_to_measure": round(time.perf_counter()
                                                                                            - started, 1),
        "operating_point": {
            "threshold": fam.threshold, "known_rejected": round(float(rejected.mean()), 4),
            "known_unfamiliar": round(float(np.mean([p.unfamiliar for p in preds])), 4),
            "accuracy": round(float(right.mean()), 4),
            "accuracy_with_rejection": round(float(np.mean(right & ~rejected)), 4),
            "wild_seconds_flagged": round(sum(v["flagged_s"] for v in videos) / seconds, 4),
            "wild_windows_flagged": round(float(np.mean(window_fam < fam.threshold)), 4)},
        "wild": {"videos": videos, "auroc": round(auroc(known_fam, window_fam), 4),
                 "auroc_top": round(auroc(probs.max(1), window_top), 4),
                 "roc": roc(known_fam, window_fam), "roc_top": roc(probs.max(1), window_top),
                 "window_s": window_s, "hop_s": hop_s},
        "loco": {"per_class": loco, "mean": mean},
        "calibration": calibration(probs, y),
    }


def leave_one_class_out(config, x: dict, labels: dict, groups: dict, classes: list[str], wild_raw: np.ndarray,
                        wild_x: np.ndarray, cache: Path) -> list[dict]:
    """The issue's protocol, with the shipped recipe: for each class, a head trained on the other five classes'
    non-test clips (as many epochs as the shipped refit) and its familiarity fitted as shipped (held-out logits of
    four fold heads, banks without their groups: :func:`har.openset.heldout.fit_familiarity`, as a run fits it);
    knowns: the
    five classes' test clips; unknowns: every clip of the left-out class and the wild videos' windows."""
    from har.openset.heldout import fit_familiarity, logits_of, train_head
    from har.openset.report import auroc
    from har.openset.score import softmax
    from har.train.recipe import options_of

    opts = options_of(config, DATA / config.data, "unused", cache)
    rows = []
    for c, label in enumerate(classes):
        started = time.perf_counter()
        keep = {s: labels[s] != c for s in x}
        xs = {s: x[s][keep[s]] for s in x}
        ys = {s: labels[s][keep[s]] - (labels[s][keep[s]] > c) for s in x}  # five classes: 0..4
        gs = {s: [g for g, k in zip(groups[s], keep[s], strict=True) if k] for s in x}
        x_known = np.concatenate([xs["train"], xs["validation"]])
        y_known = np.concatenate([ys["train"], ys["validation"]])
        head = train_head(opts, x_known, y_known, 5, config.best_epoch, opts.seed)
        part = fit_familiarity(opts, x_known, y_known, gs["train"] + gs["validation"], len(xs["train"]), 5,
                               config.best_epoch, config.uncertain_below)
        left_x = np.concatenate([x[s][labels[s] == c][:, 0] for s in x])
        logits = {"known": logits_of(head, xs["test"][:, 0]), "left": logits_of(head, left_x),
                  "wild": logits_of(head, wild_x)}
        known = part(xs["test"][:, 0], logits["known"])
        left = part(left_x, logits["left"])
        wild_s = part.of_descriptors(wild_raw, logits["wild"])
        unknown = np.concatenate([left, wild_s])
        # the app's decision: unfamiliar, or a top probability under uncertain_below
        out = {k: (f < part.threshold) | (softmax(logits[k]).max(axis=1) < config.uncertain_below)
               for k, f in (("known", known), ("left", left), ("wild", wild_s))}
        rows.append({"left_out": label, "auroc": round(auroc(known, unknown), 4),
                     "auroc_class": round(auroc(known, left), 4), "auroc_wild": round(auroc(known, wild_s), 4),
                     "known_rejected": round(float(np.mean(out["known"])), 4),
                     "unknown_caught": round(float(np.mean(np.concatenate([out["left"], out["wild"]]))), 4),
                     "class_caught": round(float(np.mean(out["left"])), 4),
                     "wild_caught": round(float(np.mean(out["wild"])), 4),
                     "seconds": round(time.perf_counter() - started, 1)})
        print("   ", json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lrcn", "convlstm"])
    ap.add_argument("--cache", type=Path, default=None, help="frame and feature cache (default: the library's)")
    ap.add_argument("--write", action="store_true", help="store models/NAME/openset.json")
    args = ap.parse_args()
    from har.data.dataset import default_cache_dir
    from har.modeldir import resolve_model_dir
    from har.openset.score import OPENSET_REPORT

    for name in args.models:
        rep = measure(name, args.cache or default_cache_dir())
        op, loco = rep["operating_point"], rep["loco"]["mean"]
        print(f"{name}: known test clips rejected {op['known_rejected']:.1%}, accuracy {op['accuracy']:.1%} -> "
              f"{op['accuracy_with_rejection']:.1%} with rejection; wild seconds flagged "
              f"{op['wild_seconds_flagged']:.1%}, windows {op['wild_windows_flagged']:.1%}; AUROC known vs wild "
              f"windows {rep['wild']['auroc']:.3f} (top probability {rep['wild']['auroc_top']:.3f}); LOCO mean AUROC "
              f"{loco['auroc']:.3f}, knowns rejected {loco['known_rejected']:.1%}, unknowns caught "
              f"{loco['unknown_caught']:.1%}; ECE {rep['calibration']['ece']:.3f}", flush=True)
        for row in rep["loco"]["per_class"]:
            print("   ", json.dumps(row))
        for v in rep["wild"]["videos"]:
            print("   ", json.dumps(v))
        if args.write:
            (resolve_model_dir(name) / OPENSET_REPORT).write_text(json.dumps(rep, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The int8 per-frame half against the float one: decisions on the model's own test groups, and speed.

    python benchmarks/bench_int8.py [--data ../shared/data] [--runs 20] [--write]

For each shipped model, both ONNX Runtime copies serve the same clips (``runtime="onnx"``: the float halves;
``"onnx-int8"``: ``frame.int8.onnx`` beside the float head, what ``auto`` serves on a CPU):

* the model's test groups (``config.json`` ``split``, never seen in training, selection or calibration), each clip
  sampled as in training: accuracy, per-class precision, recall and F1, and how many top-class decisions differ;
* the open-set decision of the same clips (unknown when the top probability is below the model's threshold or the
  familiarity below the open-set threshold fitted on float features) and of every clip of ``other-actions`` (nine
  actions none of the six): the share rejected under each, and how many decisions differ;
* the per-frame half alone, batches of 32 frames of those clips, ``--runs`` runs interleaved: ms per frame; and one
  clip through each copy (p50 ms);
* the export check's figures, read back from the int8 file's metadata.

Target (issue 33): accuracy and open-set decisions within 0.5 points of float. With ``--write`` the figures go to
``int8`` in each model's ``benchmark.json`` (other keys kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from har import Recognizer  # noqa: E402
from har.data.dataset import clips_of, index_dataset, load_frames  # noqa: E402
from har.evaluation.evaluate import metrics  # noqa: E402
from har.serve.quantize import COSINE_KEYS, INT8_FILE, MEAN_COSINE, MIN_COSINE  # noqa: E402

MODELS = ("lrcn", "convlstm")
BENCHMARK_FILE = "benchmark.json"
TARGET_POINTS = 0.5  # accuracy and open-set rejection: int8 within this many percentage points of float


def unknown(rec: Recognizer, probs: np.ndarray, familiarity: np.ndarray | None) -> np.ndarray:
    """The served open-set decision per clip: below the top-probability threshold, or below the familiarity one."""
    out = probs.max(axis=1) < rec.uncertain_below
    if familiarity is not None:
        out |= rec.familiarity.unknown(familiarity)
    return out


def per_frame_ms(recs: dict[str, Recognizer], frames: np.ndarray, runs: int) -> dict[str, float]:
    """Median ms per frame of each recognizer's per-frame half on ``frames`` (batches of 32), runs interleaved."""
    times: dict[str, list[float]] = {k: [] for k in recs}
    for r in recs.values():
        r.backend.frames(frames)
    for _ in range(runs):
        for k, r in recs.items():
            t = time.perf_counter()
            r.backend.frames(frames)
            times[k].append(1000 * (time.perf_counter() - t) / len(frames))
    return {k: float(np.median(v)) for k, v in times.items()}


def clip_ms(recs: dict[str, Recognizer], clip: np.ndarray, runs: int) -> dict[str, float]:
    """Median ms of one clip's answer (probabilities and familiarity) through each recognizer, runs interleaved."""
    times: dict[str, list[float]] = {k: [] for k in recs}
    for _ in range(runs):
        for k, r in recs.items():
            t = time.perf_counter()
            r.answer(clip)
            times[k].append(1000 * (time.perf_counter() - t))
    return {k: float(np.median(v)) for k, v in times.items()}


def measure(name: str, data: Path, runs: int) -> dict:
    recs = {"float": Recognizer(name, runtime="onnx"), "int8": Recognizer(name, runtime="onnx-int8")}
    rec = recs["float"]
    c = rec.config
    assert recs["int8"].precision == "int8", recs["int8"]
    test = clips_of(index_dataset(data / "ucf101-6"), c.split["test"])
    others = index_dataset(data / "other-actions").clips
    known = load_frames(test, c.sampling, desc=f"{name} test clips")
    strange = load_frames(others, c.sampling, desc=f"{name} other actions")
    ids = {label: i for i, label in enumerate(c.classes)}
    y = np.array([ids[clip.label] for clip in test])
    out: dict = {"clips": len(test), "other_clips": len(others)}
    answers, familiarity = {}, {}
    for k, r in recs.items():
        probs, fam = r.answer(known)
        probs_o, fam_o = r.answer(strange)
        m = metrics(y, probs.argmax(axis=1), c.classes)
        answers[k] = (probs.argmax(axis=1), unknown(r, probs, fam), unknown(r, probs_o, fam_o))
        familiarity[k] = np.concatenate([fam, fam_o]) if fam is not None else None
        out[k] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                  "per_class": {cls: {key: round(v, 4) if isinstance(v, float) else v for key, v in row.items()}
                                for cls, row in m["per_class"].items()},
                  "known_rejected": round(float(answers[k][1].mean()), 4),
                  "other_rejected": round(float(answers[k][2].mean()), 4)}
    (top_f, kn_f, ot_f), (top_8, kn_8, ot_8) = answers["float"], answers["int8"]
    out["changed"] = {"top_class": int((top_f != top_8).sum()), "known_open_set": int((kn_f != kn_8).sum()),
                      "other_open_set": int((ot_f != ot_8).sum())}
    if familiarity["float"] is not None:  # how far from the threshold the clips that change sat, and the mean move
        flipped = np.concatenate([kn_f != kn_8, ot_f != ot_8])
        out["changed"]["familiarity_from_threshold"] = [
            round(float(v), 3) for v in familiarity["float"][flipped] - recs["float"].familiarity.threshold]
        out["changed"]["familiarity_mean_move"] = round(float((familiarity["int8"] - familiarity["float"]).mean()), 4)
        out["changed"]["familiarity_move_std"] = round(float((familiarity["int8"] - familiarity["float"]).std()), 4)
    points = {key: round(100 * abs(out["int8"][key] - out["float"][key]), 2)
              for key in ("accuracy", "known_rejected", "other_rejected")}
    out["points_apart"] = points
    out["within_target"] = all(v <= TARGET_POINTS for v in points.values())
    frames = known[:2].reshape(-1, c.size, c.size, 3)[:32]  # (32, size, size, 3) frames of real test clips
    out["frame_ms"] = {k: round(v, 3) for k, v in per_frame_ms(recs, frames, runs).items()}
    out["clip_ms"] = {k: round(v, 2) for k, v in clip_ms(recs, known[:1], runs).items()}
    meta = recs["int8"].backend.sessions[INT8_FILE].get_modelmeta().custom_metadata_map
    out["export_check"] = {"min_cosine": float(meta[COSINE_KEYS[0]]), "mean_cosine": float(meta[COSINE_KEYS[1]]),
                           "bounds": [MIN_COSINE, MEAN_COSINE]}
    out["int8_bytes"] = (rec.directory / INT8_FILE).stat().st_size
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--write", action="store_true", help=f"store the figures under int8 in each {BENCHMARK_FILE}")
    args = ap.parse_args()
    for name in args.models:
        r = measure(name, args.data, args.runs)
        f, q = r["float"], r["int8"]
        print(f"\n{name}: {r['clips']} test clips, {r['other_clips']} clips of other actions; export check: cosine "
              f"{r['export_check']['min_cosine']:.4f} worst, {r['export_check']['mean_cosine']:.4f} mean")
        print("| | float | int8 | points apart |")
        print("|---|---:|---:|---:|")
        print(f"| accuracy | {f['accuracy']:.4f} | {q['accuracy']:.4f} | {r['points_apart']['accuracy']} |")
        print(f"| known test clips rejected | {f['known_rejected']:.4f} | {q['known_rejected']:.4f} | "
              f"{r['points_apart']['known_rejected']} |")
        print(f"| other actions rejected | {f['other_rejected']:.4f} | {q['other_rejected']:.4f} | "
              f"{r['points_apart']['other_rejected']} |")
        print(f"| per-frame half, ms a frame (32) | {r['frame_ms']['float']:.2f} | {r['frame_ms']['int8']:.2f} | |")
        print(f"| one clip, p50 ms | {r['clip_ms']['float']:.1f} | {r['clip_ms']['int8']:.1f} | |")
        print("| class | precision float / int8 | recall float / int8 | F1 float / int8 |")
        print("|---|---:|---:|---:|")
        for cls in f["per_class"]:
            a, b = f["per_class"][cls], q["per_class"][cls]
            print(f"| {cls} | {a['precision']:.3f} / {b['precision']:.3f} | {a['recall']:.3f} / {b['recall']:.3f} | "
                  f"{a['f1']:.3f} / {b['f1']:.3f} |")
        print(f"decisions that differ: {r['changed']}; within {TARGET_POINTS} points: {r['within_target']}")
        if args.write:
            path = REPO / "models" / name / BENCHMARK_FILE
            stored = json.loads(path.read_text()) if path.is_file() else {}
            stored["int8"] = {**r, "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            path.write_text(json.dumps(stored, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

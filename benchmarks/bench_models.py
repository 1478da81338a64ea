"""Forward-pass speed of every model directory under models/, one clip at a time, as the app runs it.

    python benchmarks/bench_models.py [--models models] [--runs 50] [--write]

For each model: load it through ``har.Recognizer`` (compiled ``tf.function``, warmed up), then time
``probabilities`` on one uint8 clip ``(1, frames, size, size, 3)`` (each model's config) ``--runs`` times,
interleaving the models round-robin so machine noise hits all of them alike. Prints median and p90 ms per clip,
parameters and size on disk; with
``--write`` also stores ``benchmark.json`` in each model directory (the dashboard's "forward ms per clip").
Targets on the 2-core CPU (issue 16): both <= 100 ms, judged on the runtime the app and CLI serve on this
machine (``runtime="auto"``: ONNX Runtime when the model has a current ONNX copy and no GPU is seen, else
TensorFlow); the table says which one that is, and shows both.

The same is measured for the ONNX copy (``frame.onnx`` + ``head.onnx``, or ``model.onnx``), and for its int8
per-frame half beside the float head (``frame.int8.onnx``: what ``auto`` serves on a CPU), and for each the time per
clip in batches of 16 (how timeline windows go to the model). Target (issue 33): one clip as served, p50 <= 15 ms.
``--write`` updates these keys of ``benchmark.json`` and keeps the others (``int8``, ``timeline_speed``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from har import Recognizer  # noqa: E402
from har.errors import ModelError  # noqa: E402
from har.serve.backends import serving_sessions  # noqa: E402
from har.serve.quantize import INT8_FILE  # noqa: E402
from har.serve.runtime import device_name  # noqa: E402

TARGET_MS = {"lrcn": 15.0, "convlstm": 15.0}  # issue 33: one clip through the served runtime, p50
BATCH = 16


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models"))
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--write", action="store_true", help="store benchmark.json next to each model")
    args = ap.parse_args()

    dirs = sorted(d for d in Path(args.models).iterdir() if (d / "model.keras").is_file())
    recs = [Recognizer(d) for d in dirs]
    onnx = {}
    for d in dirs:  # a model without a current ONNX copy has no ONNX columns
        try:
            onnx[d.name] = Recognizer(d, runtime="onnx")
        except ModelError as exc:
            print(f"{d.name}: no ONNX figures ({exc})")
    rng = np.random.default_rng(0)
    clips = {r.name: rng.integers(0, 256, (BATCH, r.config.frames, r.config.size, r.config.size, 3), np.uint8)
             for r in recs}
    int8 = {}
    for d in dirs:
        try:
            int8[d.name] = Recognizer(d, runtime="onnx-int8")
        except ModelError as exc:
            print(f"{d.name}: no int8 figures ({exc})")
    served = [(r, "keras") for r in recs] + [(r, "onnx") for r in onnx.values()] + [(r, "int8") for r in int8.values()]
    for r, _ in served:  # a few more warm-up calls
        for _ in range(3):
            r.probabilities(clips[r.name][:1])
        r.probabilities(clips[r.name])
    times: dict[tuple[str, str], list[float]] = {(r.name, rt): [] for r, rt in served}
    batched: dict[tuple[str, str], list[float]] = {(r.name, rt): [] for r, rt in served}
    for i in range(args.runs):
        for r, rt in served:
            t = time.perf_counter()
            r.probabilities(clips[r.name][:1])
            times[r.name, rt].append(1000 * (time.perf_counter() - t))
            if i % 5 == 0:  # a batch costs about 16 clips: fewer of them
                t = time.perf_counter()
                r.probabilities(clips[r.name])
                batched[r.name, rt].append(1000 * (time.perf_counter() - t) / BATCH)

    device = device_name()
    print(f"forward pass, one clip (1 x frames x size x size x 3 uint8, each model's own), {args.runs} runs, "
          f"device {device}, {os.cpu_count()} CPUs")
    print(f"| {'model':<18} | {'params':>8} | {'size MB':>7} | {'p50 ms':>7} | {'p90 ms':>7} | "
          f"batch {BATCH}, ms/clip | ONNX p50 ms | ONNX batch {BATCH}, ms/clip | int8 p50 ms | int8 batch {BATCH}, "
          "ms/clip | served | target (served p50) |")
    print(f"|{'-' * 20}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 9}|---:|---:|---:|---:|---:|---|---|")
    for r, d in zip(recs, dirs, strict=True):
        p50, p90 = float(np.median(times[r.name, "keras"])), float(np.percentile(times[r.name, "keras"], 90))
        model_mb = (d / "model.keras").stat().st_size / 1e6
        b16 = float(np.median(batched[r.name, "keras"]))
        o50 = float(np.median(times[r.name, "onnx"])) if r.name in onnx else None
        o16 = float(np.median(batched[r.name, "onnx"])) if r.name in onnx else None
        q50 = float(np.median(times[r.name, "int8"])) if r.name in int8 else None
        q16 = float(np.median(batched[r.name, "int8"])) if r.name in int8 else None
        sessions = serving_sessions(d, "auto") if o50 is not None else None  # as the app chooses
        served = "keras" if sessions is None else "onnx"
        precision = "int8" if sessions is not None and INT8_FILE in sessions else "float32"
        target = TARGET_MS.get(r.name)
        s50 = (q50 if precision == "int8" else o50) if served == "onnx" else p50
        verdict = "" if target is None else f"<= {target:.0f}: {s50:.1f} {'ok' if s50 <= target else 'MISSED'}"
        print(f"| {r.name:<18} | {r.keras_model.count_params():>8,} | {model_mb:>7.2f} | {p50:>7.1f} | {p90:>7.1f} | "
              f"{b16:.1f} | {'—' if o50 is None else f'{o50:.1f}'} | {'—' if o16 is None else f'{o16:.1f}'} | "
              f"{'—' if q50 is None else f'{q50:.1f}'} | {'—' if q16 is None else f'{q16:.1f}'} | "
              f"{served} {precision} | {verdict} |")
        if args.write:
            path = d / "benchmark.json"
            stored = json.loads(path.read_text()) if path.is_file() else {}
            path.write_text(json.dumps({**stored,
                "forward_ms": round(p50, 2), "forward_ms_p90": round(p90, 2), "batch": 1, "runs": args.runs,
                f"forward_ms_per_clip_batch{BATCH}": round(b16, 2),
                **({} if o50 is None else {"onnx_forward_ms": round(o50, 2),
                                           f"onnx_forward_ms_per_clip_batch{BATCH}": round(o16, 2)}),
                **({} if q50 is None else {"int8_forward_ms": round(q50, 2),
                                           f"int8_forward_ms_per_clip_batch{BATCH}": round(q16, 2)}),
                "served": served, "served_precision": precision,
                "device": device, "cpus": os.cpu_count(), "machine": platform.machine(),
                "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "model_bytes": (d / "model.keras").stat().st_size, "dir_bytes": dir_size(d),
            }, indent=2) + "\n")


if __name__ == "__main__":
    main()

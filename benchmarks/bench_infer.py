"""Inference speed and memory, measured side by side against the original recipes in one run.

    python benchmarks/bench_infer.py [--model lrcn] [--clips 30] [--scratch /tmp/har-bench] [--no-long]

Baselines, built here:

* (a) the original recipe for one clip: open, 20 seeks (``CAP_PROP_POS_FRAMES``) + reads, ``model.predict``;
* (b) the original long-video loop: read every frame, keep a deque of the last 20 (at the model's size),
  ``model.predict`` once per frame, draw the label, write mp4v with OpenCV;
* (c) decoding alone: every frame read once with OpenCV (the floor for anything that looks at the whole video).

Ours, with the recognizer loaded as the app runs it (``runtime="auto"``: on a CPU the int8 per-frame half), and
beside it the float halves: the timeline's one decoding pass (:func:`har.serve.timeline.scan`) with resizing on its
own thread beside decoding (overlapped, as served) and in the decoding thread (sequential), each ``--runs`` rounds
interleaved with (c), medians; the whole CLI run ``python -m har predict V --timeline --json``, and the same with
``--annotate OUT.mp4`` (process start and model load included); ``Recognizer.classify`` per clip; on a 10-minute
720p video made by concatenating the wild videos (built once in ``--scratch``, not committed): (c), the timeline,
and the peak memory of the CLI run.

Targets (issue 33), ratios of runs side by side: the timeline within 1.3x of (c) and >= 100x faster than (b) on the
rowing advert; CLI with ``--annotate`` >= 30x faster than (b); on the 10-minute video the timeline within 1.5x of
(c) and peak memory < 1 GB. ``--write`` stores the figures under ``timeline_speed`` in the model's
``benchmark.json``. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SEQ = 20  # the original recipes' SEQUENCE_LENGTH
# ``python -m har`` plus its peak memory: the same stderr copy and the same exit without teardown (har/__main__.py)
CHILD = (
    "import json, os, resource, sys, time\n"
    "sys.stderr = os.fdopen(os.dup(2), 'w', buffering=1)\n"
    "from har.cli import main\n"
    "t = time.perf_counter(); rc = main(sys.argv[1:]); dt = time.perf_counter() - t\n"
    "print(json.dumps({'rc': rc, 'seconds': dt,\n"
    "                  'self_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,\n"
    "                  'children_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
    "sys.stdout.flush(); sys.stderr.flush(); os._exit(rc)\n"
)


def clock(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


# --- baselines ------------------------------------------------------------------------------------------------


def baseline_a_clip(model, path: Path, classes) -> str:
    """The original ``predict_single_action``: 20 seeks, one ``model.predict``."""
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    skip = max(int(count / SEQ), 1)
    size = model.input.shape[2]  # the model's frame side (the write-ups': 64)
    frames = []
    for i in range(SEQ):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i * skip)
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(frame, (size, size)), cv2.COLOR_BGR2RGB))
    cap.release()
    while len(frames) < SEQ:  # the original would crash on a short read; pad to keep the comparison going
        frames.append(frames[-1])
    probs = model.predict(np.expand_dims(np.array(frames, np.uint8), 0), verbose=0)[0]
    return classes[int(np.argmax(probs))]


def baseline_b_loop(model, path: Path, out: Path, classes) -> int:
    """The original ``predict_on_video``: per frame, a deque of 20 and ``model.predict``; mp4v output."""
    cap = cv2.VideoCapture(str(path))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS), (w, h))
    queue: collections.deque = collections.deque(maxlen=SEQ)
    size = model.input.shape[2]
    label, n = "", 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        queue.append(cv2.cvtColor(cv2.resize(frame, (size, size)), cv2.COLOR_BGR2RGB))
        if len(queue) == SEQ:
            probs = model.predict(np.expand_dims(np.array(queue, np.uint8), 0), verbose=0)[0]
            label = classes[int(np.argmax(probs))]
        cv2.putText(frame, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 255, 0), 2)
        writer.write(frame)
        n += 1
    cap.release()
    writer.release()
    return n


def baseline_c_decode(path: Path) -> int:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


# --- ours -----------------------------------------------------------------------------------------------------


def _children_hwm_kb(pid: int) -> int:
    """Largest VmHWM (peak RSS, kB) among the live child processes of ``pid`` (the ffmpeg encoder)."""
    best = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and "VmHWM" in fields:
            best = max(best, int(fields["VmHWM"].split()[0]))
    return best


def run_cli(args: list[str]) -> dict:
    """``python -m har ARGS`` in a fresh process (start-up and model load included): wall time and peak RSS.

    The CLI's own peak comes from ``RUSAGE_SELF``. Its ffmpeg child is polled through ``/proc/PID/status``
    (``VmHWM``): ``RUSAGE_CHILDREN`` would report the parent's size, since a forked child counts the pages it
    shares with its parent until it execs ffmpeg."""
    t = time.perf_counter()
    # output goes to files, not pipes: a long video's JSON outgrows a pipe's buffer, and the child would block
    # writing it while this loop polls instead of reading
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=REPO, stdout=out_f, stderr=err_f, text=True)
        ffmpeg_kb = 0
        while proc.poll() is None:
            ffmpeg_kb = max(ffmpeg_kb, _children_hwm_kb(proc.pid))
            time.sleep(0.2)
        wall = time.perf_counter() - t
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    if proc.returncode != 0:
        raise SystemExit(f"CLI failed: {' '.join(args)}\n{stderr[-2000:]}")
    *_, answer, last = stdout.strip().splitlines()
    out = json.loads(last)
    out["runtime"] = json.loads(answer).get("runtime", "?")  # predict's own JSON line
    out["wall"] = wall
    out["children_mb"] = ffmpeg_kb / 1024
    return out


def long_video(scratch: Path, wild: list[Path]) -> Path:
    """About 10 minutes of 1280x720 25 fps H.264 with audio: the wild videos letterboxed, concatenated, looped."""
    out = scratch / "long-720p.mp4"
    if out.is_file():
        return out
    cycle = scratch / "cycle-720p.mp4"
    parts = "".join(
        f"[{i}:v]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,"
        f"fps=25,format=yuv420p[v{i}];[{i}:a]aresample=44100,aformat=channel_layouts=stereo[a{i}];"
        for i in range(len(wild))
    )
    joined = "".join(f"[v{i}][a{i}]" for i in range(len(wild))) + f"concat=n={len(wild)}:v=1:a=1[v][a]"
    inputs = [a for p in wild for a in ("-i", str(p))]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", parts + joined, "-map", "[v]",
                    "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-c:a", "aac",
                    str(cycle)], check=True)
    from har.media.video import probe

    loops = max(1, int(595 // max(probe(cycle).duration_s, 1)))  # stay under the 600 s default limit
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(cycle), "-c", "copy",
                    "-movflags", "+faststart", str(out)], check=True)
    cycle.unlink()
    return out


def timeline_runs(video: Path, recs: dict, runs: int) -> dict[str, float]:
    """Median seconds of decoding alone and of each timeline variant on ``video``, ``runs`` rounds interleaved
    (machine noise hits all alike): ``decode``, then ``{precision} {overlapped|sequential}`` per recognizer."""
    from har.progress import silent
    from har.serve.timeline import scan

    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(runs):
        times["decode"].append(clock(baseline_c_decode, video)[0])
        for precision, rec in recs.items():
            for overlap in (True, False):
                name = f"{precision} {'overlapped' if overlap else 'sequential'}"
                times[name].append(clock(scan, video, [rec], None, None, 5, silent, None, overlap)[0])
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    ap.add_argument("--videos", nargs="*", type=Path, default=None, help="long videos (default: shared wild/*.mp4)")
    ap.add_argument("--loop", nargs="*", default=["rowing-commercial.mp4"],
                    help="videos (names) that also run (b), the per-frame loop (minutes each)")
    ap.add_argument("--runs", type=int, default=3, help="rounds of decoding and timelines per video (median)")
    ap.add_argument("--clips", type=int, default=30, help="shared clips for the one-clip comparison")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/har-bench"), help="outputs and the 10-minute video")
    ap.add_argument("--no-long", action="store_true", help="skip the 10-minute 720p memory run")
    ap.add_argument("--write", action="store_true", help="store the figures under timeline_speed in benchmark.json")
    args = ap.parse_args()

    from har import Recognizer
    from har.data.dataset import index_dataset
    from har.serve.runtime import device_name

    args.scratch.mkdir(parents=True, exist_ok=True)
    videos = args.videos or sorted((SHARED / "wild").glob("*.mp4"))
    t_load, rec = clock(Recognizer, args.model, runtime="auto")
    recs = {rec.precision: rec}
    if rec.precision == "int8":  # beside it, the float halves it stands in for
        recs["float32"] = Recognizer(args.model, runtime="onnx")
    # the baselines get the model as saved (the recognizer serves a copy whose frames fold into the batch)
    from har.modeldir import load_model
    from har.serve.runtime import load_tensorflow

    load_tensorflow()
    model, classes = load_model(rec.directory)[0], rec.config.classes
    print(f"model {rec.name} ({rec.directory}), device {device_name()}, {os.cpu_count()} cores; "
          f"recognizer ({rec.runtime}, {rec.precision}) loaded and warmed up in {t_load:.1f} s", flush=True)

    rows = []
    for v in videos:
        print(f"{v.name}: (c) decoding alone and the timelines, {args.runs} rounds ...", flush=True)
        times = timeline_runs(v, recs, args.runs)
        print(f"{v.name}: ours, CLI predict --timeline (--json), then with --annotate ...", flush=True)
        cli_plain = run_cli(["predict", str(v), "--model", str(rec.directory), "--timeline", "--json"])
        cli = run_cli(["predict", str(v), "--model", str(rec.directory), "--timeline", "--annotate",
                       str(args.scratch / f"{v.stem}.annotated.mp4"), "--json"])  # default runtime: auto
        t_b = None
        if v.name in args.loop:
            print(f"{v.name}: (b) per-frame model.predict loop ...", flush=True)
            t_b, _ = clock(baseline_b_loop, model, v, args.scratch / f"{v.stem}.baseline.mp4", classes)
        info = cv2.VideoCapture(str(v))
        size = f"{int(info.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(info.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
        frames = int(info.get(cv2.CAP_PROP_FRAME_COUNT))
        info.release()
        rows.append({"video": v.name, "size": size, "frames": frames, **{k: round(t, 3) for k, t in times.items()},
                     "cli_timeline": round(cli_plain["wall"], 2), "cli_annotate": round(cli["wall"], 2),
                     "runtime": cli["runtime"], "per_frame_loop": None if t_b is None else round(t_b, 2)})

    clips = []
    if args.clips:
        index = index_dataset(SHARED / "ucf101-6")
        step = max(1, len(index.clips) // args.clips)
        clips = [c.path for c in index.clips[::step][: args.clips]]
        print(f"{len(clips)} clips: (a) 20 seeks + model.predict, and ours ...", flush=True)
        t_a = sum(clock(baseline_a_clip, model, c, classes)[0] for c in clips)
        t_ours = sum(clock(rec.classify, c)[0] for c in clips)

    long = None
    if not args.no_long:
        print("10-minute 720p video: building (once) ...", flush=True)
        lv = long_video(args.scratch, videos)
        print(f"{lv.name}: decoding alone, the timeline (overlapped, in-process), the CLI run's peak memory ...",
              flush=True)
        from har.media.video import probe

        long = {"decode": clock(baseline_c_decode, lv)[0], "timeline": clock(rec.timeline, lv)[0]}
        long["cli"] = run_cli(["predict", str(lv), "--model", str(rec.directory), "--timeline", "--annotate",
                               str(args.scratch / "long.annotated.mp4"), "--json"])
        long["duration"] = probe(lv).duration_s

    def ok(good: bool) -> str:
        return "yes" if good else "**no**"

    main_p = rec.precision
    print()
    print(f"timelines in-process, recognizer loaded (marginal cost), median of {args.runs}; (c) decoding alone "
          "reads every frame")
    names = [f"{p} {o}" for p in recs for o in ("overlapped", "sequential")]
    print("| video | size | frames | (c) decode s | " + " | ".join(f"{n} s" for n in names)
          + f" | {main_p} overlapped / (c) (<= 1.3) | (b) loop s | (b) / timeline (>= 100) | CLI timeline s "
          "| CLI + annotate s | (b) / CLI + annotate (>= 30) |")
    print("|---|---|---:|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tl = r[f"{main_p} overlapped"]
        b = r["per_frame_loop"]
        print(f"| {r['video']} | {r['size']} | {r['frames']} | {r['decode']:.2f} | "
              + " | ".join(f"{r[n]:.2f}" for n in names)
              + f" | {tl / r['decode']:.2f} {ok(tl / r['decode'] <= 1.3)} | {'—' if b is None else f'{b:.1f}'} | "
              + ("—" if b is None else f"{b / tl:.0f}x {ok(b / tl >= 100)}")
              + f" | {r['cli_timeline']:.2f} | {r['cli_annotate']:.2f} ({r['runtime']}) | "
              + ("—" if b is None else f"{b / r['cli_annotate']:.1f}x {ok(b / r['cli_annotate'] >= 30)}") + " |")
    if clips:
        print()
        print("| clips | (a) 20 seeks + predict, s/clip | ours classify, s/clip | (a) / ours (>= 3) |")
        print("|---:|---:|---:|---:|")
        print(f"| {len(clips)} | {t_a / len(clips):.3f} | {t_ours / len(clips):.3f} | {t_a / t_ours:.1f}x "
              f"{ok(t_a / t_ours >= 3)} |")
    if long:
        print()
        cli_long = long["cli"]
        total = cli_long["self_mb"] + cli_long["children_mb"]  # both peaks at once: an upper bound of the run's peak
        print("| 10-min 720p video | (c) decode s | timeline s | timeline / (c) (<= 1.5) | CLI + annotate s | "
              "peak RSS, python MB | peak RSS, ffmpeg MB | sum MB | < 1 GB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {long['duration']:.0f} s | {long['decode']:.1f} | {long['timeline']:.1f} | "
              f"{long['timeline'] / long['decode']:.2f} {ok(long['timeline'] / long['decode'] <= 1.5)} | "
              f"{cli_long['wall']:.0f} | {cli_long['self_mb']:.0f} | {cli_long['children_mb']:.0f} | {total:.0f} | "
              f"{ok(total < 1024)} |")
    print(f"\n{os.cpu_count()} cores, {device_name()}; ratios are of runs made side by side in this process.")
    if args.write:
        import datetime as dt

        path = rec.directory / "benchmark.json"
        stored = json.loads(path.read_text()) if path.is_file() else {}
        stored["timeline_speed"] = {
            "served": f"{rec.runtime} {rec.precision}", "runs": args.runs, "videos": rows,
            **({"clips": len(clips), "clip_baseline_s": round(t_a / len(clips), 4),
                "classify_s": round(t_ours / len(clips), 4)} if clips else {}),
            **({"long": {"duration_s": round(long["duration"], 1), "decode_s": round(long["decode"], 2),
                         "timeline_s": round(long["timeline"], 2), "cli_annotate_s": round(long["cli"]["wall"], 1),
                         "peak_python_mb": round(long["cli"]["self_mb"]),
                         "peak_ffmpeg_mb": round(long["cli"]["children_mb"])}} if long else {}),
            "cpus": os.cpu_count(), "device": device_name(),
            "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        path.write_text(json.dumps(stored, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

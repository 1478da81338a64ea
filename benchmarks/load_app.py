"""Many visitors at once: drive the launched app with gradio_client and check every answer.

    python benchmarks/load_app.py                   # launches app.py here: 24 requests, 8 at once, then the probe
    python benchmarks/load_app.py -n 48 -k 8 --no-queue-probe
    python benchmarks/load_app.py --url http://127.0.0.1:7860/ [--pid PID] [--tmp DIR]   # an app already running

Requests mix the example clips, bad files from benchmarks/corpus.py (each must get its own error, naming its file) and
long videos (``../shared/data/wild``). First each distinct video is sent alone: under load it must get that same
answer (label and confidences), with a timeline covering the whole video; every upload has a unique name that the
JSON result must repeat, so an answer handed to the wrong request is caught. How many examples get the class in
their name is printed too (the model's accuracy). Each visitor is one thread with its own client (session).

Reported: latency p50/p95 per kind and overall, outcomes by kind, peak RSS of the server's process tree (sampled
from /proc every 0.2 s, with the server's own VmHWM), temporary files left in the app's TMPDIR and half-written
files in Gradio's cache, and the cache after the server stops. The queue probe launches a second app with
``HAR_CONCURRENCY=1 HAR_QUEUE_SIZE=2``, keeps it busy with a long video, then fires more requests at once than it
can hold: the extra ones must be told "busy, try again" at once, the others answered correctly.
Exit status 0 when every target holds (no wrong or lost answer, no leftover, RSS under ``--max-rss-gb``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WILD = REPO.parent / "shared" / "data" / "wild"
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages

from benchmarks import corpus, launcher  # noqa: E402  (the bad files and their messages; app.py on a free port)
from har.serve.backends import ORT_SESSION_FILE  # noqa: E402

BAD = ("zero-bytes", "random-bytes", "text", "png", "audio-only", "truncated-index-last", "too-long")
MIX = ("example", "bad", "example", "example", "bad", "example", "long", "example")  # repeated up to N requests


@dataclass(frozen=True)
class Job:
    """One request and what its answer must be."""

    id: int
    kind: str  # "example", "bad" or "long"
    file: Path  # a uniquely named copy of ``source``
    source: Path
    error: str | None = None  # bad: regex of its error (naming ``file``); None: an answer

    @property
    def expected_class(self) -> str | None:
        """An example's class, from its name (v_<Class>_gGG_cCC.mp4)."""
        return self.source.stem.split("_")[1] if self.kind == "example" else None


@dataclass
class Outcome:
    job: Job
    seconds: float
    status: str  # "ok", "expected error", "busy", "wrong answer", "wrong error", "timeout", "failed"
    detail: str = ""
    label: str = ""  # the answer's top class

    @property
    def good(self) -> bool:
        return self.status in ("ok", "expected error")


def make_jobs(n: int, workdir: Path, mix: tuple[str, ...] = MIX, wild: Path = WILD) -> list[Job]:
    """``n`` requests cycling through ``mix``; inputs are unique copies (hard links where possible) in ``workdir``."""
    inputs = workdir / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    bad_dir = corpus.build(workdir / "corpus")
    examples = sorted((REPO / "examples").glob("v_*.mp4"))
    longs = sorted(wild.glob("*.mp4")) if wild.is_dir() else []
    if "long" in mix and not longs:
        print(f"note: no long videos in {wild}; long requests become examples", file=sys.stderr)
    jobs, counts = [], Counter()
    for i in range(n):
        kind = mix[i % len(mix)]
        kind = "example" if kind == "long" and not longs else kind
        j = counts[kind]
        counts[kind] += 1
        if kind == "example":
            src = examples[j % len(examples)]
            jobs.append(Job(i, kind, _copy(src, inputs / f"r{i:03d}-{src.name}"), src))
        elif kind == "bad":
            item = corpus.BY_NAME[BAD[j % len(BAD)]]
            src, name = bad_dir / item.filename, f"r{i:03d}-{item.filename}"
            jobs.append(Job(i, kind, _copy(src, inputs / name), src, error=item.message(name)))
        else:
            src = longs[j % len(longs)]
            jobs.append(Job(i, kind, _copy(src, inputs / f"r{i:03d}-{src.name}"), src))
    return jobs


def _copy(src: Path, dest: Path) -> Path:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return dest


Answer = dict[str, float]  # label -> confidence, the first output of /recognize


def _confidences(top: dict) -> Answer:
    return {c["label"]: c["confidence"] for c in top["confidences"]}


def references(url: str, jobs: list[Job], downloads: Path) -> dict[Path, Answer]:
    """The answer to each distinct input when it is the only request: under load it must get exactly this one.
    (Whether it is the class in an example's name is the model's accuracy, reported but not a target here.)"""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=str(downloads))
    refs: dict[Path, Answer] = {}
    for job in jobs:
        if job.error is None and job.source not in refs:
            refs[job.source] = _confidences(client.predict(video=handle_file(str(job.source)),
                                                           api_name="/recognize")[0])
    return refs


def check(job: Job, answer: tuple, ref: Answer) -> str:
    """Why ``answer`` (the /recognize outputs) is not the right one for ``job``; "" when it is."""
    top, _, annotated, _, _, _, result, _, _ = answer
    data = json.loads(Path(result).read_text())
    if data["source"] != job.file.name:
        return f"answer for {data['source']!r}, not for {job.file.name!r}"
    if not Path(annotated).name.startswith(job.file.stem):
        return f"annotated copy {Path(annotated).name!r} is not of {job.file.name!r}"
    conf = _confidences(top)
    if abs(sum(conf.values()) - 1) > 0.01:
        return f"confidences sum to {sum(conf.values()):.3f}"
    if set(conf) != set(ref) or max(abs(conf[k] - ref[k]) for k in ref) > 0.002:
        return f"answer {top['label']!r} {conf} differs from this input's answer alone {ref}"
    lrcn = data["models"]["LRCN"]
    seconds = lrcn["duration_s"]
    if len(lrcn["per_second"]["t"]) != max(1, math.ceil(seconds - 1e-6)):
        return f"timeline has {len(lrcn['per_second']['t'])} seconds for a {seconds:.1f} s video"
    return ""


def run_job(client, job: Job, refs: dict[Path, Answer], timeout: float) -> Outcome:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    t0 = time.perf_counter()
    try:
        answer = client.submit(video=handle_file(str(job.file)), api_name="/recognize").result(timeout=timeout)
    except QueueError as exc:
        return Outcome(job, time.perf_counter() - t0, "busy", str(exc))
    except AppError as exc:
        seconds, text = time.perf_counter() - t0, str(exc)
        if job.error and re.search(job.error, text) and "Traceback" not in text:
            return Outcome(job, seconds, "expected error", text)
        return Outcome(job, seconds, "wrong error", text)
    except TimeoutError:
        return Outcome(job, time.perf_counter() - t0, "timeout", f"no answer within {timeout:g} s")
    except Exception as exc:  # anything else is a failure of the app (or of this script), reported, not raised
        return Outcome(job, time.perf_counter() - t0, "failed", f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0
    if job.error:
        return Outcome(job, seconds, "wrong answer", "answered instead of refused")
    why = check(job, answer, refs[job.source])
    return Outcome(job, seconds, "wrong answer" if why else "ok", why, answer[0]["label"])


def run_load(url: str, jobs: list[Job], concurrency: int, downloads: Path, refs: dict[Path, Answer],
             timeout: float = 600.0) -> list[Outcome]:
    """Every job through ``concurrency`` visitors at once, each a thread with its own gradio_client session; the
    outputs are downloaded into ``downloads``; ``refs``: :func:`references`."""
    from gradio_client import Client

    pending = list(reversed(jobs))
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def visitor() -> None:
        client = Client(url, verbose=False, download_files=str(downloads))
        while True:
            with lock:
                if not pending:
                    return
                job = pending.pop()
            outcome = run_job(client, job, refs, timeout)
            with lock:
                outcomes.append(outcome)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="visitor") as pool:
        for f in [pool.submit(visitor) for _ in range(concurrency)]:
            f.result()
    return sorted(outcomes, key=lambda o: o.job.id)


# ---- the server: launch, watch, clean --------------------------------------------------------------------------


@dataclass
class App:
    url: str
    pid: int | None = None
    tmp: Path | None = None  # TMPDIR
    cache: Path | None = None  # GRADIO_TEMP_DIR
    log: Path | None = None
    after_stop: dict = field(default_factory=dict)  # filled when a launched app has stopped


@contextmanager
def launched_app(workdir: Path, **env: str) -> Iterator[App]:
    """``python app.py`` (benchmarks/launcher.py) with uploads up to the corpus' limit; after it stops, ``after_stop``
    says its exit status and how many request files it left in its cache."""
    at_start: set[Path] = set()
    env = {"HAR_MAX_UPLOAD_MB": str(corpus.UPLOAD_LIMIT_MB), **env}
    try:
        with launcher.launched_app(workdir, env, timeout_s=300) as launched:
            print(f"app.py answering after {launched.startup_s:.1f} s at {launched.url}", file=sys.stderr)
            app = App(launched.url, pid=launched.pid, tmp=launched.tmp, cache=launched.cache, log=launched.log)
            at_start = _files(launched.cache)  # the example clips and figures the page itself shows stay in the cache
            yield app
    except launcher.AppDidNotStart as exc:
        raise SystemExit(str(exc)) from exc
    app.after_stop = {"exit status": launched.returncode,
                      "request files left in the cache": len(_files(app.cache) - at_start)}


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except OSError:
            pass
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:60]
    except OSError:
        return str(pid)


class RssMonitor:
    """Peak resident memory of a process and its children (ffmpeg encoders), sampled from /proc."""

    def __init__(self, pid: int | None, every_s: float = 0.2):
        self.pid, self.every_s = pid, every_s
        self.peak_tree_kb = 0
        self.children_at_peak: list[str] = []  # "command RSS" of each child process at the tree's peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        server_exe = _exe(self.pid)
        while not self._stop.is_set():
            todo, total, children = [self.pid], 0, []
            while todo:
                p = todo.pop()
                todo += _children(p)
                if p != self.pid and _exe(p) == server_exe:
                    continue  # forked, not yet exec'd: still the server's own memory (vfork shares it), not more
                rss = _status_kb(p, "VmRSS")
                total += rss
                if p != self.pid:
                    children.append((rss, p))
            if total > self.peak_tree_kb:
                self.peak_tree_kb = total
                self.children_at_peak = [f"{_command(p)} {rss / 1024:.0f} MB" for rss, p in sorted(children)[::-1]]
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssMonitor:
        if self.pid:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def hwm_kb(self) -> int:
        """The server process's own peak (VmHWM): exact, but without its children."""
        return _status_kb(self.pid, "VmHWM") if self.pid else 0


def leftovers(app: App) -> list[str]:
    """Temporary files a finished request must not leave: anything in TMPDIR, half-written files in the cache
    (``.name.tmp.mp4`` of the annotated copy, Gradio's ``.name.xxxx`` staging copies), empty output folders."""
    found = []
    if app.tmp and app.tmp.exists():
        found += [str(p) for p in app.tmp.iterdir() if p.name != ORT_SESSION_FILE]
    if app.cache and app.cache.exists():
        found += [str(p) for p in app.cache.rglob(".*") if p.is_file()]
        found += [str(p) for p in app.cache.glob("har-*") if p.is_dir() and not any(p.iterdir())]
    return sorted(found)


# ---- the queue probe -------------------------------------------------------------------------------------------


def probe_jobs(workdir: Path, extra: int = 5) -> tuple[list[Job], Job | None]:
    """``2 + extra`` example requests, and a long one to keep the probe's app busy (None without long videos)."""
    shorts = make_jobs(2 + extra, workdir / "probe-inputs", mix=("example",))
    long_job = make_jobs(1, workdir / "probe-long", mix=("long",))[0]
    return shorts, long_job if long_job.kind == "long" else None


def queue_probe(workdir: Path, shorts: list[Job], long_job: Job | None, refs: dict[Path, Answer],
                timeout: float = 600.0) -> dict:
    """An app that holds 1 running and 2 waiting requests gets a long request, then the short ones at once: all
    but 2 of them must be answered "busy" within seconds, every other one correctly (``refs``)."""
    from gradio_client import Client

    with launched_app(workdir / "probe-app", HAR_CONCURRENCY="1", HAR_QUEUE_SIZE="2") as app:
        downloads = workdir / "probe-downloads"
        clients = [Client(app.url, verbose=False, download_files=str(downloads)) for _ in range(len(shorts) + 1)]
        with ThreadPoolExecutor(len(clients)) as pool:
            blocker = pool.submit(run_job, clients[0], long_job, refs, timeout) if long_job else None
            time.sleep(3.0)  # the long request is running: the queue is empty, the one worker busy
            start = threading.Barrier(len(shorts))

            def fire(client, job) -> Outcome:
                start.wait()
                return run_job(client, job, refs, timeout)

            outcomes = list(pool.map(fire, clients[1:], shorts))
            if blocker is not None:
                outcomes.append(blocker.result())
        left = leftovers(app)
    busy = [o for o in outcomes if o.status == "busy"]
    return {
        "requests": len(outcomes), "answered": sum(o.good for o in outcomes), "busy": len(busy),
        "busy within s": round(max((o.seconds for o in busy), default=0.0), 2),
        "busy message": busy[0].detail if busy else "",
        "wrong or lost": [f"{o.job.file.name}: {o.status} {o.detail}" for o in outcomes
                          if not o.good and o.status != "busy"],
        "leftovers": left, "blocked by a long video": long_job is not None,
    }


# ---- report ----------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(outcomes: list[Outcome]) -> list[dict]:
    rows = []
    for kind in ("example", "bad", "long", "all"):
        sel = [o for o in outcomes if kind == "all" or o.job.kind == kind]
        if not sel:
            continue
        secs = [o.seconds for o in sel]
        rows.append({"kind": kind, "requests": len(sel), "p50 s": round(statistics.median(secs), 2),
                     "p95 s": round(percentile(secs, 95), 2), "max s": round(max(secs), 2),
                     "outcomes": dict(Counter(o.status for o in sel))})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--requests", type=int, default=24, help="requests in all (default 24)")
    ap.add_argument("-k", "--concurrency", type=int, default=8, help="visitors at once (default 8)")
    ap.add_argument("--url", help="an app already running (default: launch app.py here)")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for its RSS")
    ap.add_argument("--tmp", type=Path, help="with --url: the server's TMPDIR, for leftovers")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds a request may take (default 600)")
    ap.add_argument("--no-queue-probe", dest="queue_probe", action="store_false",
                    help="skip the queue-overflow probe (it launches a second app)")
    ap.add_argument("--max-rss-gb", type=float, default=3.0, help="target for the server's peak RSS (default 3)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="har-load-") as work:
        work = Path(work)
        jobs = make_jobs(args.requests, work)
        probing = args.queue_probe and args.url is None
        shorts, long_job = probe_jobs(work) if probing else ([], None)
        with (launched_app(work / "app") if args.url is None else nullapp(args)) as app:
            with RssMonitor(app.pid) as rss:
                refs = references(app.url, [*jobs, *shorts, *([long_job] if long_job else [])], work / "downloads")
                t0 = time.perf_counter()
                outcomes = run_load(app.url, jobs, args.concurrency, work / "downloads", refs, args.timeout)
                wall = time.perf_counter() - t0
            hwm_kb = rss.hwm_kb
            left = leftovers(app)
        probe = queue_probe(work, shorts, long_job, refs, args.timeout) if probing else None

    rows = summarize(outcomes)
    peak_gb = max(rss.peak_tree_kb, hwm_kb) / 2**20 if app.pid else None
    bad = [o for o in outcomes if not o.good]
    print(f"\n{args.requests} requests, {args.concurrency} at once, {wall:.1f} s in all "
          f"({os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f})\n")
    print("| kind | requests | p50 s | p95 s | max s | outcomes |\n|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['requests']} | {r['p50 s']} | {r['p95 s']} | {r['max s']} | "
              + ", ".join(f"{k}: {v}" for k, v in r["outcomes"].items()) + " |")
    examples = [o for o in outcomes if o.job.kind == "example" and o.status == "ok"]
    right = sum(o.label == o.job.expected_class for o in examples)
    print(f"\nexamples answered with the class in their name: {right} of {len(examples)} (the model's accuracy; "
          "the target is that each request gets the answer its input gets alone)")
    if app.pid:
        print(f"\nserver peak RSS: {peak_gb:.2f} GB (process tree, sampled: {rss.peak_tree_kb / 2**20:.2f} GB; "
              f"server process VmHWM: {hwm_kb / 2**20:.2f} GB); target < {args.max_rss_gb:g} GB")
        if rss.children_at_peak:
            print(f"child processes at the peak: {'; '.join(rss.children_at_peak[:4])}")
    print(f"temporary files left after the run: {len(left)}" + (f" {left[:5]}" if left else ""))
    if app.after_stop:
        print(f"after the server stopped: {app.after_stop}")
    for o in bad:
        print(f"  {o.job.file.name}: {o.status} after {o.seconds:.1f} s: {o.detail[:300]}")
    if probe:
        print(f"\nqueue probe (HAR_CONCURRENCY=1, HAR_QUEUE_SIZE=2): {probe['requests']} requests at once, "
              f"{probe['answered']} answered correctly, {probe['busy']} told busy within {probe['busy within s']} s "
              f"({probe['busy message']!r}); wrong or lost: {probe['wrong or lost'] or 'none'}; "
              f"leftovers: {len(probe['leftovers'])}")
    ok = (not bad and not left and (peak_gb is None or peak_gb < args.max_rss_gb)
          and (probe is None or (probe["busy"] >= 1 and not probe["wrong or lost"] and not probe["leftovers"]
                                 and probe["busy within s"] < 10)))
    if args.json:
        print(json.dumps({"requests": args.requests, "concurrency": args.concurrency, "wall_s": round(wall, 1),
                          "rows": rows, "peak_rss_gb": peak_gb and round(peak_gb, 3), "leftovers": left,
                          "after_stop": app.after_stop, "queue_probe": probe, "ok": ok}))
    print("\nall targets met" if ok else "\nTARGETS MISSED", file=sys.stderr)
    return 0 if ok else 1


@contextmanager
def nullapp(args) -> Iterator[App]:
    yield App(args.url, pid=args.pid, tmp=args.tmp)


if __name__ == "__main__":
    sys.exit(main())

"""Batch throughput: ``python -m har batch`` on local files and on links served by a local HTTP server.

    python benchmarks/bench_batch.py [--per-class 10] [--jobs 1 2 4] [--scratch /tmp/har-bench-batch]

The clips: every 8th clip of each class of ``../shared/data/ucf101-6``, at most ``--per-class`` per class
(symlinked into ``--scratch``). Runs the whole command line each time (process start and model load included in
the wall time; the videos-per-minute figure is the command's own, from its first video to its last) on the class
folders, then on a CSV list of the same clips as links to a server on 127.0.0.1 with each ``--jobs``. Prints a
Markdown table (docs/batch.md has the last one).
"""

from __future__ import annotations

import argparse
import csv
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UCF = REPO.parent / "shared" / "data" / "ucf101-6"


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, videos per minute as the command reports it, first line of its summary)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "har", "batch", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=3600)
    wall = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    pace = re.search(r"\(([\d.]+) per minute\)", done.stderr)
    return wall, float(pace.group(1)) if pace else float("nan"), done.stdout.splitlines()[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--scratch", default="/tmp/har-bench-batch")
    a = p.parse_args()
    scratch = Path(a.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    data = scratch / "data"
    clips = []
    for cls in sorted(d.name for d in UCF.iterdir() if d.is_dir()):
        (data / cls).mkdir(parents=True)
        for clip in sorted((UCF / cls).glob("*.mp4"))[::8][: a.per_class]:
            (data / cls / clip.name).symlink_to(clip)
            clips.append((cls, clip.name))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(data))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    links = scratch / "links.csv"
    with open(links, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "expected"])
        w.writerows([f"http://127.0.0.1:{httpd.server_port}/{cls}/{name}", cls] for cls, name in clips)
    env = {"HAR_ALLOWED_HOSTS": "127.0.0.1:*"}
    load = os.getloadavg()[0]  # the machine may be shared: the figures scale with what else runs
    rows = [("local files (class folders)", *run([str(data), "--out", str(scratch / "out-local")], env))]
    for jobs in a.jobs:
        rows.append((f"links on 127.0.0.1, --jobs {jobs}",
                     *run([str(links), "--out", str(scratch / f"out-links-{jobs}"), "--jobs", str(jobs)], env)))
    httpd.shutdown()
    print(f"{len(clips)} clips; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print("| inputs | videos per minute | wall time (with start-up) | summary |\n| --- | ---: | ---: | --- |")
    for name, wall, pace, summary in rows:
        print(f"| {name} | {pace:.0f} | {wall:.1f} s | {summary} |")


if __name__ == "__main__":
    main()

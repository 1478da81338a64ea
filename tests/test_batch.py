"""``python -m har batch`` and har.batch (items, runner, results, report): real clips served to real yt-dlp by a
local HTTP server on 127.0.0.1 (nothing else is contacted), the shipped LRCN as the app serves it, a run killed with
SIGKILL and resumed, and the warning for a video that is only partly read (library and command line).

Truth: the shipped example clips are from test groups and the shipped models get them right (README), so their
expected labels are the answers the report must count as correct.
"""

from __future__ import annotations

import csv
import fcntl
import functools
import http.server
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from har.batch.items import Item, collect, parse_line, pasted_items, read_list
from har.batch.results import Results, manifest
from har.batch.runner import status_of
from har.errors import HarError
from har.serve.cache import max_cache_bytes, sweep
from har.serve.turns import Turns

EXAMPLES = sorted((REPO / "examples").glob("v_*.mp4"))  # one per class; both shipped models get them right
LABEL = {p.name: p.stem.split("_")[1] for p in EXAMPLES}
SLOW_S = 0.4  # every /slow/ request waits this long: a batch of links lasts long enough to be killed halfway
ENV = {"HAR_ALLOWED_HOSTS": "127.0.0.1:*", "HAR_FETCH_RETRIES": "0", "HAR_FETCH_TIMEOUT_S": "5"}


def truncated(path: Path, keep: int = 30_000) -> Path:
    """A real clip cut to its first ``keep`` bytes: its index (first, faststart) still says the whole length."""
    source = next(p for p in EXAMPLES if p.name.startswith("v_HorseRace"))  # 4.0 s, 100 frames
    path.write_bytes(source.read_bytes()[:keep])
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; ``/slow/<file>`` waits :data:`SLOW_S` first. Every request path is logged."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.paths.append(self.path)
        if self.path.startswith("/slow/"):
            time.sleep(SLOW_S)
            self.path = self.path[len("/slow"):]
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.paths.append(self.path)
        self.path = self.path.removeprefix("/slow")
        super().do_HEAD()

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    for p in EXAMPLES:
        shutil.copyfile(p, root / p.name)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)  # a header, then noise
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.daemon_threads = True
    httpd.paths = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def batch_list(server, tmp_path_factory) -> tuple[Path, dict]:
    """A CSV list mixing the example clips as links (expected labels given) with a truncated local file, a broken
    file, a missing link, a missing file and a refused host; and the outcome each row must have."""
    d = tmp_path_factory.mktemp("lists")
    truncated(d / "cut.mp4")
    base = f"http://127.0.0.1:{server.server_port}"
    rows = [("input", "expected", "start", "end")]
    want: dict[int, tuple[str, str | None]] = {}  # n -> (status, label)
    for p in EXAMPLES:
        rows.append((f"{base}/slow/{p.name}?item={len(rows)}", LABEL[p.name].lower(), "", ""))  # any case
        want[len(rows) - 1] = ("ok", LABEL[p.name])
    rows.append(("cut.mp4", "HorseRace", "", ""))  # relative to the list's folder
    want[len(rows) - 1] = ("ok", None)
    rows.append((f"{base}/broken.mp4", "Surfing", "", ""))
    want[len(rows) - 1] = ("failed", None)
    rows.append((f"{base}/gone.mp4", "Archery", "", ""))
    want[len(rows) - 1] = ("failed", None)
    rows.append(("missing.mp4", "Archery", "", ""))
    want[len(rows) - 1] = ("failed", None)
    rows.append(("https://example.com/clip.mp4", "Archery", "", ""))  # refused before any connection
    want[len(rows) - 1] = ("refused", None)
    rows.append((f"{base}/slow/{EXAMPLES[2].name}?item=section", LABEL[EXAMPLES[2].name], "1", "3"))
    want[len(rows) - 1] = ("ok", None)  # a section of a link: cut by ffmpeg
    path = d / "videos.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path, want


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _one_error_line(done: subprocess.CompletedProcess, pattern: str) -> None:
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert pattern in lines[0], lines[0]


# ---- inputs ---------------------------------------------------------------------------------------------------


def test_inputs_from_files_class_folders_lists_and_links(tmp_path):
    (tmp_path / "Surfing").mkdir()
    (tmp_path / "Archery" / "more").mkdir(parents=True)
    for folder, name in (("Surfing", "a.mp4"), ("Archery/more", "b.avi"), (".", "loose.mkv")):
        (tmp_path / folder / name).write_bytes(b"x")
    (tmp_path / "notes.txt.bak").write_text("not a video")
    (tmp_path / "list.txt").write_text("# a comment\n\nhttps://youtu.be/abc, Surfing, 3, 9.5\nclips/x.mp4\n"
                                       "https://youtu.be/def\t Piano \nyoutube.com/watch?v=q\n")
    (tmp_path / "list.csv").write_text("Expected,Link\nArchery,/abs/y.mp4\n,https://youtu.be/ghi\n")
    items = collect([str(tmp_path), str(tmp_path / "list.txt"), str(tmp_path / "list.csv"), "https://youtu.be/z"])
    got = [(i.n, Path(i.input).name if not i.link else i.input, i.expected, i.start_s, i.end_s, i.link)
           for i in items]
    assert got == [
        (1, "loose.mkv", None, None, None, False),  # directly in the folder: no label
        (2, "b.avi", "Archery", None, None, False),  # a class folder's, at any depth
        (3, "a.mp4", "Surfing", None, None, False),
        (4, "https://youtu.be/abc", "Surfing", 3.0, 9.5, True),
        (5, "x.mp4", None, None, None, False),
        (6, "https://youtu.be/def", "Piano", None, None, True),
        (7, "youtube.com/watch?v=q", None, None, None, True),  # a link without its scheme (har.links.fetch adds it)
        (8, "y.mp4", "Archery", None, None, False),  # columns found by the header's names
        (9, "https://youtu.be/ghi", None, None, None, True),
        (10, "https://youtu.be/z", None, None, None, True),
    ]
    assert items[4].input == str(tmp_path / "clips" / "x.mp4")  # relative to the list's folder
    assert items[7].input == "/abs/y.mp4"


def test_inputs_that_cannot_start_a_batch(tmp_path):
    with pytest.raises(HarError, match=r"^'nope.csv' does not exist: give video files, folders, list files"):
        collect(["nope.csv"])
    (tmp_path / "bad.csv").write_text("https://youtu.be/a,Surfing,soon\n")
    with pytest.raises(HarError, match=r"^bad.csv, line 1: the start time 'soon' is not a number of seconds"):
        collect([str(tmp_path / "bad.csv")])
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    with pytest.raises(HarError, match="No videos to test"):
        collect([str(tmp_path / "empty.txt")])
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(HarError, match=r"The list '.*binary.txt' cannot be read"):
        read_list(tmp_path / "binary.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarError, match="holds no video"):
        collect([str(tmp_path / "empty")])


def test_pasted_lines_are_links_never_server_paths():
    assert parse_line("  # comment") is None and parse_line("") is None
    items = pasted_items("/etc/passwd\nclip.mp4, Surfing\nyoutube.com/watch?v=x, Archery\n",
                         [Path("/tmp/gradio/1/clip.mp4"), Path("/tmp/gradio/2/other.mp4")])
    assert [(i.input, i.expected, i.link) for i in items] == [
        ("/etc/passwd", None, True),  # a link to har.links.fetch (which refuses it: not a link), never opened here
        ("youtube.com/watch?v=x", "Archery", True),
        ("/tmp/gradio/1/clip.mp4", "Surfing", False),  # a line naming an upload labels it
        ("/tmp/gradio/2/other.mp4", None, False),
    ]


def test_refusals_and_failures_are_told_apart():
    assert status_of("The link goes to 'example.com', which is not an allowed host on this server") == "refused"
    assert status_of("'x.mp4' is 12 min 0 s long; videos up to 10 min 0 s can be analysed. Trim it") == "refused"
    assert status_of("The video is larger than the 200 MB this server downloads (HAR_MAX_DOWNLOAD_MB).") == "refused"
    assert status_of("Video file 'x.mp4' does not exist.") == "failed"


# ---- a real batch ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def straight_run(batch_list, tmp_path_factory):
    """The batch run straight through by the command line: (output folder, process)."""
    path, _ = batch_list
    out = tmp_path_factory.mktemp("straight") / "out"
    done = run_cli("batch", str(path), "--out", str(out), "--jobs", "2", env=ENV, timeout=300)
    return out, done


def test_a_batch_reports_every_item_against_the_truth(straight_run, batch_list, server):
    out, done = straight_run
    _, want = batch_list
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert sorted(r["n"] for r in rows) == list(range(1, len(want) + 1))
    by_n = {r["n"]: r for r in rows}
    for n, (status, label) in want.items():
        assert by_n[n]["status"] == status, by_n[n]
        if label:
            assert by_n[n]["label"] == label and by_n[n]["correct"] is True, by_n[n]
    for r in rows:
        assert set(r) == set(("n input expected start_s end_s status label score correct uncertain top familiarity "
                              "read_s length_s warning seconds error").split())
        assert r["familiarity"] is None  # no shipped model carries it yet
        assert (r["error"] is None) == (r["status"] == "ok") and r["seconds"] >= 0
        if r["status"] == "ok":
            assert len(r["top"]) == 5 and (r["top"][0]["label"] == r["label"] or r["uncertain"])
    cut = next(r for r in rows if r["input"].endswith("cut.mp4"))
    assert cut["read_s"] < 0.5 * cut["length_s"] and cut["length_s"] == pytest.approx(4.0, abs=0.05)
    assert cut["warning"].startswith(f"Only {cut['read_s']:.1f} s of this video's 4.0 s could be read")
    section = by_n[max(want)]
    assert section["length_s"] == pytest.approx(2.0, abs=0.3) and section["warning"] is None
    errors = {Path(r["input"]).name: r["error"] for r in rows if r["error"]}
    assert "looks like an MP4/MOV file but cannot be decoded" in errors["broken.mp4"]
    assert errors["gone.mp4"].startswith("The video is unavailable (private, removed, or never existed)")
    assert errors["missing.mp4"] == "Video file 'missing.mp4' does not exist."
    assert "'example.com', which is not an allowed host on this server" in errors["clip.mp4"]
    # The CSV holds the same rows, in the order they were known.
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["n"]) for r in table] == [r["n"] for r in rows]
    assert {r["n"]: r["label"] for r in table} == {str(r["n"]): r["label"] or "" for r in rows}
    # The summary: counts, accuracy and the confusion matrix against the expected labels.
    s = json.loads((out / "summary.json").read_text())
    scored = [r for r in rows if r["status"] == "ok"]
    assert (s["items"], s["answered"], s["refused"], s["failed"]) == (len(want), len(scored), 1, 3)
    assert s["scored"] == len(scored) and s["correct"] == sum(r["correct"] for r in scored)
    assert s["accuracy"] == pytest.approx(s["correct"] / s["scored"])
    assert s["labels"][-1] == "none of the known actions" and len(s["confusion"]) == 7
    for label in LABEL.values():
        i = s["labels"].index(label)
        expected = sum(1 for r in scored if r["expected"].lower() == label.lower())
        assert s["confusion"][i][i] >= 1 and s["per_class"][label]["support"] == expected
    assert {r["status"] for r in s["reasons"]} == {"failed", "refused"}
    assert [p["input"] for p in s["partly_read"]] == [cut["input"]]
    text = (out / "summary.txt").read_text()
    assert text.strip() in done.stdout
    assert f"Accuracy against the expected labels: {s['correct']} of {s['scored']}" in text
    assert "Confusion (rows: expected, columns: answered)" in text and "none of the k" in text
    assert "Partly read: #" in text and "Refused (1): The link goes to '…'" in text
    assert not (out / ".downloads").exists()  # every download gone


def test_a_row_is_what_the_library_answers(straight_run, batch_list, shipped):
    from har import analyze

    out, _ = straight_run
    path, _ = batch_list
    rec = shipped("lrcn", "auto")
    row = next(r for r in _rows(out) if r["input"].endswith("cut.mp4"))
    clip = analyze(path.parent / "cut.mp4", rec, timeline=False)["lrcn"].clip
    assert row["label"] == clip.label and row["top"] == [s.to_dict() for s in clip.top]
    assert row["warning"] == clip.read_warning()


def test_a_killed_batch_resumes_without_losing_or_redoing_items(straight_run, batch_list, server, tmp_path):
    path, want = batch_list
    out = tmp_path / "out"
    start = len(server.paths)
    proc = subprocess.Popen([sys.executable, "-m", "har", "batch", str(path), "--out", str(out), "--jobs", "1"],
                            cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    jsonl = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while not (jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    before = _rows(out)
    assert 3 <= len(before) < len(want), len(before)
    links_done = {r["input"].split(str(server.server_port))[1] for r in before if r["input"].startswith("http")}
    assert links_done, "the first rows are links"
    asked = len(server.paths)
    # A line cut short by the kill (simulated: the kill itself lands between whole lines here) is redone.
    with open(jsonl, "a") as f:
        f.write('{"n": 99, "inp')
    resumed = run_cli("batch", str(path), "--out", str(out), "--resume", env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(before)} of {len(want)} done, {len(want) - len(before)} to go" in resumed.stderr
    rows = _rows(out)
    assert sorted(r["n"] for r in rows) == list(range(1, len(want) + 1))  # every item exactly once
    assert rows[: len(before)] == before  # nothing done was lost or changed
    again = [p for p in server.paths[asked:] if any(p.startswith(d) or p.startswith("/slow" + d)
                                                    for d in links_done)]
    assert again == [], f"items done before the kill were fetched again: {again}"
    with open(out / "results.csv", newline="") as f:
        assert sorted(int(r["n"]) for r in csv.DictReader(f)) == list(range(1, len(want) + 1))
    # The same report as the batch run straight through.
    straight, _ = straight_run
    assert json.loads((out / "summary.json").read_text()) == json.loads((straight / "summary.json").read_text())
    labels = {r["n"]: (r["status"], r["label"], r["error"]) for r in rows}
    assert labels == {r["n"]: (r["status"], r["label"], r["error"]) for r in _rows(straight)}
    assert len(server.paths) > start and not (out / ".downloads").exists()


def test_errors_that_stop_a_batch_before_it_starts(straight_run, batch_list, tmp_path, cli):
    out, _ = straight_run
    path, _ = batch_list
    _one_error_line(cli("batch", "nope.csv", "--out", str(tmp_path / "o")), "'nope.csv' does not exist")
    _one_error_line(cli("batch", str(path), "--out", str(out)), "already holds a batch's results: add --resume")
    _one_error_line(cli("batch", str(REPO / "examples"), "--out", str(out), "--resume"),
                    "The inputs differ from those of the batch in")
    _one_error_line(cli("batch", str(path), "--out", str(tmp_path / "m"), "--model", str(tmp_path)),
                    "model")
    _one_error_line(cli("batch", str(path), "--out", str(tmp_path / "j"), "--jobs", "0"), "--jobs")
    _one_error_line(cli("batch", str(path)), "the following arguments are required: --out")  # argparse's words
    _one_error_line(cli("batch", str(path), "--out", "x", "--top-k", "many"), "invalid int value: 'many'")
    bad = tmp_path / "bad.txt"
    bad.write_text("https://youtu.be/a, Surfing\nhttps://youtu.be/b, Surfing, 5, later\n")
    _one_error_line(cli("batch", str(bad), "--out", str(tmp_path / "b")),
                    "bad.txt, line 2: the end time 'later' is not a number of seconds")
    assert not (tmp_path / "b").exists() and not (tmp_path / "o").exists()


def test_a_progress_bar_with_eta_on_a_terminal(tmp_path):
    lst = tmp_path / "three.txt"
    lst.write_text("\n".join(str(p) for p in EXAMPLES[:3]) + "\n")
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal of 24 x 100
    proc = subprocess.Popen([sys.executable, "-m", "har", "batch", str(lst), "--out", str(tmp_path / "o")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=child, text=True)
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = proc.communicate(timeout=120)
    os.close(main)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "3/3" in text and "<" in text and ("video/s" in text or "s/video" in text), text  # tqdm, with ETA
    assert "3 videos: 3 answered." in stdout


# ---- how much was read ----------------------------------------------------------------------------------------


def test_a_truncated_file_says_how_much_was_read(tmp_path, shipped, cli):
    from har import analyze

    cut = truncated(tmp_path / "cut.mp4")
    rec = shipped("lrcn", "auto")
    for timeline in (False, True):
        clip = analyze(cut, rec, timeline=timeline)["lrcn"].clip
        assert clip.length_s == pytest.approx(4.0, abs=0.05) and 0 < clip.read_s < 2.0, (timeline, clip)
        assert clip.partly_read
        assert clip.read_warning() == (f"Only {clip.read_s:.1f} s of this video's 4.0 s could be read "
                                       f"({clip.read_s / 4.0:.0%}): the file is probably truncated or damaged, and "
                                       "the answer is about that part only.")
        assert clip.to_dict()["read_s"] == round(clip.read_s, 2)
    whole = rec.classify(EXAMPLES[0])
    assert not whole.partly_read and whole.read_warning() is None and whole.read_s == pytest.approx(whole.length_s)
    done = cli("predict", str(cut))
    assert done.returncode == 0, done.stderr
    assert f"warning: {clip.read_warning()}" in done.stderr.splitlines()
    done = cli("predict", str(cut), "--json")
    assert json.loads(done.stdout.splitlines()[-1])["length_s"] == 4.0 and "warning: Only" in done.stderr
    assert "warning" not in cli("predict", str(EXAMPLES[0])).stderr


# ---- the pieces the app shares ---------------------------------------------------------------------------------


def test_results_files_refuse_to_mix_batches(tmp_path):
    items = [Item(1, "a.mp4"), Item(2, "b.mp4")]
    r = Results(tmp_path, manifest(items, "lrcn", 5))
    r.add({"n": 1, "input": "a.mp4", "status": "failed", "error": "x", "top": []})
    with pytest.raises(AssertionError, match="recorded twice"):
        r.add({"n": 1})
    with pytest.raises(HarError, match="add --resume"):
        Results(tmp_path, manifest(items, "lrcn", 5))
    with pytest.raises(HarError, match="The model or top-k differ"):
        Results(tmp_path, manifest(items, "convlstm", 5), resume=True)
    assert Results(tmp_path, manifest(items, "lrcn", 5), resume=True).done == {1}


def test_turns_are_first_come_first_served():
    turns, order, lock = Turns(1), [], threading.Lock()

    def batch():  # takes a turn per item, queueing again behind anyone who came meanwhile
        for i in range(4):
            with turns():
                with lock:
                    order.append(f"batch{i}")
                time.sleep(0.1)

    def single():
        with turns():
            with lock:
                order.append("single")

    t = threading.Thread(target=batch)
    t.start()
    time.sleep(0.05)  # during the batch's first item
    s = threading.Thread(target=single)
    s.start()
    s.join(timeout=5)
    t.join(timeout=5)
    assert order == ["batch0", "single", "batch1", "batch2", "batch3"]


def test_the_cache_is_swept_oldest_first_down_to_its_cap(tmp_path, monkeypatch):
    now = time.time()
    for name, age in (("a/old.mp4", 7200), ("b/older.mp4", 9000), ("c/mid.mp4", 600), ("d/young.mp4", 5)):
        p = tmp_path / name
        p.parent.mkdir()
        p.write_bytes(b"x" * 1_000_000)
        os.utime(p, (now - age, now - age))
    removed = sweep(tmp_path, 2_500_000)
    assert [p.name for p in removed] == ["older.mp4", "old.mp4"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # emptied folders go too
    assert sweep(tmp_path, 0) == [tmp_path / "c" / "mid.mp4"]  # the young file is spared: a request may use it
    assert (tmp_path / "d" / "young.mp4").exists()
    monkeypatch.setenv("HAR_MAX_CACHE_MB", "1.5")
    assert max_cache_bytes() == 1_500_000
    monkeypatch.setenv("HAR_MAX_CACHE_MB", "lots")
    with pytest.raises(HarError, match=r"HAR_MAX_CACHE_MB='lots' is not a positive number of megabytes"):
        max_cache_bytes()

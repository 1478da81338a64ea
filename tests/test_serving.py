"""Promises of the server itself, each on an app launched for it: a full queue answers "busy, try again" at once,
old empty output folders are swept, SIGTERM empties Gradio's cache, and a bad ``HAR_*`` number stops start-up with
one clear line. The app serves the tiny model of conftest.py (``HAR_MODELS_DIR``) through ONNX Runtime, so it starts
without TensorFlow (benchmarks/launcher.py starts it and stops it with SIGTERM)."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import REPO
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

from benchmarks.launcher import launched_app

pytestmark = pytest.mark.slow

EXAMPLE = next((REPO / "examples").glob("v_Surfing_*.mp4"))


class _Hold(http.server.BaseHTTPRequestHandler):
    """``GET /hold``: answers 404 only once the test releases it (``server.release``), keeping a fetch waiting."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.held.set()
        self.server.release.wait(120)
        self.send_error(404)


@pytest.fixture
def hold():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hold)
    httpd.daemon_threads = True
    httpd.held, httpd.release = threading.Event(), threading.Event()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def models_dir(tiny_model, tmp_path):
    """A models directory holding the tiny LRCN only (the ConvLSTM is then unavailable, which is fine here)."""
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(tiny_model, root / "lrcn")
    return root


def test_full_queue_says_busy_at_once_sweeps_old_folders_and_sigterm_empties_the_cache(models_dir, hold, tmp_path):
    env = {"HAR_MODELS_DIR": str(models_dir), "HAR_CONCURRENCY": "1", "HAR_QUEUE_SIZE": "1", "HAR_MAX_DOWNLOADS": "1",
           "HAR_ALLOWED_HOSTS": "127.0.0.1:*", "HAR_FETCH_TIMEOUT_S": "60", "HAR_FETCH_RETRIES": "0"}
    with launched_app(tmp_path / "app", env) as app:
        at_start = files(app.cache)  # the example clips and figures the page itself shows stay in the cache
        # Empty output folders of earlier requests: an old one goes with the next request, a young one stays (it may
        # be another request's, not written yet), and so does an old one with a file (Gradio's sweep removes files).
        old, young, full = (app.cache / f"har-{n}" for n in ("old", "young", "full"))
        for d in (old, young, full):
            d.mkdir(parents=True)
        (full / "kept.txt").write_text("x")
        an_hour_ago = time.time() - 3600
        for d in (old, full):
            os.utime(d, (an_hour_ago, an_hour_ago))

        clients = [Client(app.url, verbose=False, download_files=str(tmp_path / "downloads")) for _ in range(5)]
        blocker = clients[0].submit(url=f"http://127.0.0.1:{hold.server_port}/hold", api_name="/recognize")
        assert hold.held.wait(60), "the first request never reached its link"
        # Two workers (one recognition, one download): the link holds one, an upload takes the other, one more
        # request may wait, the others are told.
        t0 = time.monotonic()

        def outcome(job) -> tuple[str, object, float]:
            try:
                return "answer", job.result(timeout=300), time.monotonic() - t0
            except QueueError as exc:
                return "busy", str(exc), time.monotonic() - t0

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(outcome, c.submit(video=handle_file(EXAMPLE), api_name="/recognize"))
                       for c in clients[1:]]
            while sum(f.done() for f in futures) < 2 and time.monotonic() - t0 < 30:
                time.sleep(0.1)
            released_s = time.monotonic() - t0
            hold.release.set()
            outcomes = sorted((f.result() for f in futures), key=lambda o: (o[0], o[2]))
        kinds = [kind for kind, _, _ in outcomes]
        assert kinds == ["answer", "answer", "busy", "busy"], outcomes
        for _, message, seconds in outcomes[2:]:
            assert "Queue is full" in message and "try again" in message, message
            assert seconds < 10 and seconds <= released_s, (seconds, released_s)  # at once, while the worker is busy
        answer = outcomes[0][1]
        assert answer[0]["label"] in ("Archery", "PlayingPiano", "Surfing")  # the waiting one got its answer
        with pytest.raises(AppError, match=r"unavailable .*HTTP Error 404"):  # and the first its own error
            blocker.result(timeout=60)

        assert not old.exists() and young.is_dir() and (full / "kept.txt").is_file()
        shutil.rmtree(young)
        shutil.rmtree(full)
        outputs = [p for p in app.cache.glob("har-*/*") if p.is_file()]
        assert outputs, "the answered request left no output in the cache to be emptied"
    # launched_app stopped the server with SIGTERM: as on Ctrl-C, Gradio emptied its cache on the way out
    assert app.returncode == 0
    assert files(app.cache) - at_start == set() and not [p for p in outputs if p.exists()]


def files(root) -> set:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.mark.parametrize(("name", "value", "line"), [
    ("HAR_QUEUE_SIZE", "0", "error: HAR_QUEUE_SIZE='0' is not a whole number of at least 1."),
    ("HAR_CONCURRENCY", "two", "error: HAR_CONCURRENCY='two' is not a whole number of at least 1."),
    ("HAR_MAX_VIDEO_SECONDS", "-5", "error: HAR_MAX_VIDEO_SECONDS='-5' is not a positive number of seconds."),
    ("HAR_MAX_DOWNLOAD_MB", "lots", "error: HAR_MAX_DOWNLOAD_MB='lots' is not a positive number of megabytes."),
])
def test_a_bad_number_stops_start_up_with_one_line(name, value, line, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    env.update({name: value, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
                "GRADIO_ANALYTICS_ENABLED": "False"})
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [line]), done.stderr[-2000:]
    assert time.monotonic() - t0 < 60  # before the models load (the import of Gradio is most of it)

"""``python app.py`` in a subprocess on 127.0.0.1 and a free port, as a visitor's server would run it: one launcher
for the test suite's app (tests/conftest.py) and the load benchmark's (benchmarks/load_app.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class AppDidNotStart(RuntimeError):
    """app.py exited or did not answer in time; the message ends with the tail of its log."""


@dataclass
class LaunchedApp:
    url: str  # http://127.0.0.1:<port>/
    startup_s: float  # from process start to the API answering
    tmp: Path  # the app's TMPDIR: per-request temporaries must not stay there
    log: Path  # the app's stdout and stderr
    pid: int  # the server process (its /proc/<pid>/status has the peak RSS, VmHWM)
    cache: Path  # GRADIO_TEMP_DIR: uploads and the outputs handed to the browser
    returncode: int | None = None  # the exit status, once stopped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def launched_app(workdir: Path, env: dict[str, str | None], timeout_s: float = 180) -> Iterator[LaunchedApp]:
    """The app with its own TMPDIR and Gradio cache under ``workdir`` and ``env`` on top of this process's
    environment (less ``PORT``; a None value unsets that variable); ready when its API answers. Stopped with
    SIGTERM at the end, as a host stops it (the app then empties its cache), killed if it does not exit within
    30 s. Raises :class:`AppDidNotStart`."""
    workdir.mkdir(parents=True, exist_ok=True)
    tmp, cache, log = workdir / "tmp", workdir / "gradio", workdir / "app.log"
    tmp.mkdir(exist_ok=True)
    port = free_port()
    full = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "TMPDIR": str(tmp),
            "GRADIO_TEMP_DIR": str(cache), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "PORT": None,
            **env}
    full = {k: v for k, v in full.items() if v is not None}
    url = f"http://127.0.0.1:{port}/"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=full, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                raise AppDidNotStart(f"app.py exited with status {proc.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() - t0 > timeout_s:
                raise AppDidNotStart(f"app.py did not answer within {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        app = LaunchedApp(url, time.monotonic() - t0, tmp, log, proc.pid, cache)
        yield app
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    app.returncode = proc.returncode

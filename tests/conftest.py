"""Shared fixtures: the shared data folder, tiny real videos written with OpenCV, a model trained for one epoch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import netns
import numpy as np
import pytest

from benchmarks.launcher import AppDidNotStart, LaunchedApp, launched_app

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# gradio_client builds its headers with huggingface_hub, which fetches a registry from huggingface.co for them: the
# tests talk to 127.0.0.1 only (no_way_out below counts such attempts). Set before anything imports huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# the local web server of the tests that fetch links, with its fixtures (tests/linkserver.py)
pytest_plugins = ("linkserver",)

NETNS: str | None = None  # how this session is kept to loopback (tests/netns.py), or None when it is not


def pytest_configure(config) -> None:
    """The whole session, and every process it starts, in a network namespace with loopback only. Required in CI;
    elsewhere a warning when the kernel refuses (the in-process recorder below remains)."""
    global NETNS
    if os.environ.get("HAR_TEST_NETNS", "1") == "0":
        return
    if netns.loopback_only():
        NETNS = "started in one"
        return
    try:
        NETNS = netns.isolate()
    except OSError as exc:
        msg = f"cannot run the tests in a loopback-only network namespace: {exc} (HAR_TEST_NETNS=0 to opt out)"
        if os.environ.get("CI"):
            raise pytest.UsageError(msg) from exc
        import warnings

        warnings.warn(msg, stacklevel=1)


def pytest_report_header(config) -> str:
    return f"network: {'loopback only (' + NETNS + ')' if NETNS else 'not isolated'}"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
UCF = SHARED_DATA / "ucf101-6"
WILD = SHARED_DATA / "wild"


def need(path: Path) -> Path:
    """The shared data must exist in CI (fail loudly); elsewhere a test without it is skipped with the reason."""
    if not path.exists():
        msg = f"shared data missing: {path}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def ucf() -> Path:
    return need(UCF)


@pytest.fixture(scope="session")
def wild() -> Path:
    return need(WILD)


BITS = 10  # frame index encoded as 10 vertical black/white stripes: survives lossy codecs and a 64x64 resize


def index_frame(i: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A BGR frame whose stripes spell ``i`` in binary (most significant bit left)."""
    img = np.zeros((height, width, 3), np.uint8)
    stripe = width // BITS
    for b in range(BITS):
        if (i >> (BITS - 1 - b)) & 1:
            img[:, b * stripe : (b + 1) * stripe] = 255
    return img


def read_index(rgb: np.ndarray) -> int:
    """Inverse of :func:`index_frame` on a (possibly resized, RGB or BGR) frame."""
    h, w = rgb.shape[:2]
    gray = rgb.mean(axis=2) if rgb.ndim == 3 else rgb
    value = 0
    for b in range(BITS):
        x0 = int((b + 0.3) * w / BITS)
        x1 = max(int((b + 0.7) * w / BITS), x0 + 1)
        value = (value << 1) | int(gray[h // 4 : 3 * h // 4, x0:x1].mean() > 127)
    return value


def write_video(path: Path, frames: int, fourcc: str = "mp4v", fps: float = 25.0, size=(320, 240),
                make=index_frame) -> Path:
    """Write ``frames`` frames with OpenCV; frame i is ``make(i, w, h)``. Asserts the writer opened."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path.suffix}"
    for i in range(frames):
        writer.write(make(i, w, h))
    writer.release()
    return path


def unsure_clip(directory: Path) -> Path:
    """A clip of none of the six actions (3 s of stripes spelling the frame index) that the shipped LRCN is unsure
    of: its best class scores about 0.3, under its threshold of 0.5 (the app then shows its notice). H.264, so that
    a browser plays the upload too."""
    import imageio_ffmpeg

    raw = write_video(directory / "stripes-mp4v.mp4", 75, "mp4v")
    out = directory / "stripes.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(raw), "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(out)], check=True, timeout=60)
    raw.unlink()
    return out


@pytest.fixture
def index_video(tmp_path):
    """Factory: a video whose frame i shows i in stripes."""

    def make(frames: int, name: str = "idx.avi", fourcc: str = "MJPG", **kw) -> Path:
        return write_video(tmp_path / name, frames, fourcc, **kw)

    return make


@pytest.fixture
def connections(monkeypatch) -> list:
    """Every address this process connects a socket to during the test, in order (connections still go through)."""
    seen: list = []
    real_connect = socket.socket.connect

    def connect(self, address):
        seen.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def no_way_out():
    """Fails the test if any process of the session (the CLI, ffmpeg, the app: children included) tried to reach an
    address outside loopback while it ran: the namespace's count of attempts without a route (tests/netns.py)."""
    if NETNS is None:
        yield
        return
    before = netns.attempts_outside()
    yield
    tried = netns.attempts_outside() - before
    assert tried == 0, f"{tried} attempt(s) to reach an address outside loopback during this test (any process)"


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m har ARGS`` in a subprocess from the repo root, capturing text output: for what only a process
    shows (its exit status after a signal, a terminal, what it imports, its environment at start)."""
    return subprocess.run([sys.executable, "-m", "har", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def cli(capsys, monkeypatch):
    """``har.cli.main(ARGS)`` in this process, given back as :func:`run_cli` gives a process (a ``CompletedProcess``:
    the exit status, stdout and stderr, argparse's own exits included, log records of WARNING and above on stderr
    as the command line's logging set-up prints them): its parsing, output and one-line errors without starting
    Python and TensorFlow again. ``env`` is set for the call."""
    import logging

    from har.cli import main

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        capsys.readouterr()  # what the test printed before is not the command's
        root = logging.getLogger()
        shown = logging.StreamHandler(sys.stderr)  # the captured stderr, as a process's basicConfig would print
        shown.setLevel(logging.INFO if {"-v", "--verbose"} & set(args) else logging.WARNING)
        shown.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        level = root.level
        with monkeypatch.context() as scoped:
            for name, value in (env or {}).items():
                scoped.setenv(name, value)
            root.addHandler(shown)
            root.setLevel(min(level, shown.level))
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help, or a usage error (status 2)
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                root.removeHandler(shown)
                root.setLevel(level)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["har", *args], code, out, err)

    return run


@pytest.fixture(scope="session", autouse=True)
def frame_cache(tmp_path_factory) -> Path:
    """The frame and feature cache of the whole session (``HAR_CACHE_DIR``, inherited by every process the tests
    start): each clip is decoded once per sampling, and the user's own cache is neither read nor written. A test
    of the cache itself gives its own directory."""
    directory = tmp_path_factory.mktemp("frame-cache")
    with pytest.MonkeyPatch.context() as session:
        session.setenv("HAR_CACHE_DIR", str(directory))
        yield directory


@pytest.fixture(scope="session")
def shipped():
    """Factory: ``shipped(name, runtime="keras")``, the :class:`har.Recognizer` of ``models/<name>``, loaded once
    per session and shared (a recognizer is safe to share); missing is a failure in CI only."""
    from har import Recognizer
    from har.modeldir import MODEL_FILE

    loaded: dict[tuple[str, str], Recognizer] = {}

    def get(name: str, runtime: str = "keras") -> Recognizer:
        if (name, runtime) not in loaded:
            directory = REPO / "models" / name
            if not (directory / MODEL_FILE).is_file():
                msg = f"shipped model missing: {directory / MODEL_FILE} (python -m har train --like models/{name})"
                if os.environ.get("CI"):
                    pytest.fail(msg)
                pytest.skip(msg)
            rec = loaded[name, runtime] = Recognizer(directory, runtime=runtime)
            # "auto" serves on a runtime of its choice: that one's too ("onnx" asks for the float halves only)
            loaded.setdefault((name, "onnx-int8" if rec.precision == "int8" else rec.runtime), rec)
        return loaded[name, runtime]

    return get


@pytest.fixture(scope="session")
def tiny_dataset(ucf, tmp_path_factory) -> Path:
    """A small real dataset: 3 classes x 3 groups x 2 clips of the shared data, symlinked (18 clips)."""
    root = tmp_path_factory.mktemp("tiny-data")
    for cls in ("Archery", "PlayingPiano", "Surfing"):
        (root / cls).mkdir()
        for g in ("g08", "g09", "g10"):
            for clip in sorted((ucf / cls).glob(f"v_{cls}_{g}_c0[12].mp4")):
                (root / cls / clip.name).symlink_to(clip)
    return root


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, frame_cache, tmp_path_factory) -> Path:
    """An LRCN trained for one epoch on :func:`tiny_dataset` through the real training code: every artifact."""
    from har.train.fit import TrainOptions, train

    out = tmp_path_factory.mktemp("tiny-model") / "lrcn"
    train(TrainOptions(arch="lrcn", data=tiny_dataset, out=out, epochs=1, batch_size=4, seed=0, cache_dir=frame_cache))
    return out


@pytest.fixture(scope="session")
def tiny_recognizer(tiny_model):
    """A :class:`har.Recognizer` on :func:`tiny_model`, loaded and warmed up once for the session."""
    from har import Recognizer

    return Recognizer(tiny_model)


# ---- the app, launched once per session and shared by tests/test_app.py and tests/test_browser.py ---------------


AppServer = LaunchedApp  # what the app_server fixture gives


@pytest.fixture(scope="session")
def app_server(tmp_path_factory) -> AppServer:
    """``python app.py`` (benchmarks/launcher.py), allowed to fetch links from 127.0.0.1 (``HAR_ALLOWED_HOSTS``) with a
    short timeout and no retry, taking uploads up to 8 MB (benchmarks/corpus.py has a file just over), its cache capped
    at 40 MB. Models: ``models/`` (or ``$HAR_MODELS_DIR``)."""
    env = {"HAR_ALLOWED_HOSTS": "127.0.0.1:*", "HAR_MAX_UPLOAD_MB": "8", "HAR_FETCH_TIMEOUT_S": "3",
           "HAR_FETCH_RETRIES": "0", "HAR_MAX_CACHE_MB": "40",
           "HAR_MAX_VIDEO_SECONDS": None}  # the default limit (600 s), which benchmarks/corpus.py's long video exceeds
    try:
        with launched_app(tmp_path_factory.mktemp("app"), env) as app:
            yield app
    except AppDidNotStart as exc:
        pytest.fail(str(exc))

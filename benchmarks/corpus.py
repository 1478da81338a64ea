"""A corpus of bad (and merely unusual) inputs, generated on the spot and kept small (about 1.5 MB on disk).

Every :class:`Item` says what a user must get: a correct answer (``error is None``) or an error whose text matches
``error``. ``tests/test_robustness.py`` checks each through the library, the command line and the app;
``benchmarks/load_app.py`` mixes some into its load. Files are made from one shipped example clip with OpenCV's
writers and ffmpeg (the binary of the ``imageio-ffmpeg`` wheel: always installed, and recent enough for
``-display_rotation``); links point at a local HTTP server on 127.0.0.1 (:func:`serve`), nowhere else.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "examples" / "v_Surfing_g22_c02.mp4"  # 320x240, 25 fps, 76 frames (3.04 s), H.264, index first
LONG_S = 620  # just over the default limit of 600 s (HAR_MAX_VIDEO_SECONDS)
UPLOAD_LIMIT_MB = 8  # HAR_MAX_UPLOAD_MB of the app the tests launch (conftest.py); Gradio counts MiB
SLOW_S = 10.0  # how long the local server keeps a "slow" link waiting: longer than any fetch timeout we set


@dataclass(frozen=True)
class Item:
    """One input of the corpus and the outcome every path must give for it."""

    name: str  # test id
    what: str  # what it is, for people
    filename: str | None = None  # a file written by ``make`` (None: a link)
    make: Callable[[Path, Path], None] | None = None  # make(path, source clip)
    link: str | None = None  # a path on the local server (:func:`serve`), e.g. "/slow.mp4"
    error: str | None = None  # regex of the error message, "{name}" standing for the quoted file name; None: answer
    limit: bool = False  # refused by a limit (length, size), although the file itself decodes
    app_only: bool = False  # a limit of the app's uploads (the library and the CLI take local files of any size)
    env: tuple[tuple[str, str], ...] = ()  # environment of the library and CLI paths (the app keeps its own)
    partly_read: bool = False  # answered from much less than the container's length: the answer says so

    def message(self, filename: str | None = None) -> str:
        """The error regex for this item saved as ``filename`` (default: its own name)."""
        assert self.error is not None, self.name
        return self.error.replace("{name}", re.escape(f"'{filename or self.filename}'"))

    def input(self, root: Path, base_url: str = "") -> str:
        """The file's path under ``root``, or the link on the server at ``base_url``."""
        return str(root / self.filename) if self.filename else base_url.rstrip("/") + self.link


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ff(*args) -> None:
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True,
                   capture_output=True, timeout=120)


X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-an")


def _ffmpeg_from_source(*args: str) -> Callable[[Path, Path], None]:
    """``make`` that runs ``ffmpeg -i SOURCE ARGS PATH``."""
    return lambda path, source: _ff("-i", source, *args, path)


def _bytes(data: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    return lambda path, source: path.write_bytes(data(source))


def _png(_source: Path) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((48, 64, 3), 200, np.uint8))
    assert ok
    return buf.tobytes()


def _half_with_index_last(path: Path, source: Path) -> None:
    """A clip whose index (moov) follows the data, as ffmpeg writes MP4 by default, cut halfway: no index left."""
    whole = path.with_name("whole-" + path.name)
    _ff("-i", source, *X264, whole)
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) // 2])


def _opencv(frames: int, size: tuple[int, int], fourcc: str = "MJPG") -> Callable[[Path, Path], None]:
    """``make`` writing the source's first ``frames`` frames resized to ``size`` with OpenCV's writer."""

    def make(path: Path, source: Path) -> None:
        cap = cv2.VideoCapture(str(source))
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, size)
        assert writer.isOpened(), path
        for _ in range(frames):
            ok, img = cap.read()
            assert ok, source
            writer.write(cv2.resize(img, size, interpolation=cv2.INTER_LINEAR))
        writer.release()
        cap.release()

    return make


def _over_upload_limit(path: Path, source: Path) -> None:
    with open(path, "wb") as f:  # a real clip's start, then zeros up to just over the limit (sparse on disk)
        f.write(source.read_bytes())
        f.truncate((UPLOAD_LIMIT_MB << 20) + 1)


ITEMS: tuple[Item, ...] = (
    # --- not videos at all
    Item("zero-bytes", "zero-byte file", "empty.mp4", _bytes(lambda s: b""),
         error=r"Video file {name} is empty \(0 bytes\); the upload may have failed\."),
    Item("random-bytes", "random bytes named .mp4", "random.mp4",
         _bytes(lambda s: np.random.default_rng(0).integers(0, 256, 64_000, np.uint8).tobytes()),
         error=r"{name} is not a video that can be decoded \(unknown format or not a video file at all\)"),
    Item("text", "a text file renamed .mp4", "notes.mp4", _bytes(lambda s: b"Not a video, just notes.\n" * 40),
         error=r"{name} is a text file, not a video\."),
    Item("png", "a PNG image renamed .mp4", "picture.mp4", _bytes(_png), error=r"{name} is a PNG image, not a video\."),
    Item("audio-only", "audio-only MP4 (AAC)", "audio-only.mp4",
         lambda path, source: _ff("-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac", path),
         error=r"{name} has no video stream: it holds only audio\."),
    # --- damaged videos
    Item("truncated", "a real clip cut halfway (index first: the first half decodes)", "truncated.mp4",
         _bytes(lambda s: s.read_bytes()[: s.stat().st_size // 2]), partly_read=True),
    Item("truncated-index-last", "a real clip cut halfway (index last: nothing decodes)", "truncated-index-last.mp4",
         _half_with_index_last,
         error=r"{name} looks like an MP4/MOV file but cannot be decoded: it is probably truncated"),
    # --- unusual but valid videos: each must get an answer
    Item("1-frame", "a 1-frame video", "one-frame.mp4", _ffmpeg_from_source("-frames:v", "1", *X264)),
    Item("3-frames", "a 3-frame video", "three-frames.mp4", _ffmpeg_from_source("-frames:v", "3", *X264)),
    Item("4000x3000", "4000x3000 frames (4 frames, MJPG)", "big-4000x3000.avi", _opencv(4, (4000, 3000))),
    Item("321x241", "321x241 frames (odd size, MJPG)", "odd-321x241.avi", _opencv(30, (321, 241))),
    Item("grayscale", "grayscale H.264 (High 4:0:0)", "gray.mp4", _ffmpeg_from_source(*X264, "-pix_fmt", "gray")),
    Item("1-fps", "1 fps (3 frames over 3 s)", "fps-1.mp4", _ffmpeg_from_source("-vf", "fps=1", *X264)),
    Item("120-fps", "120 fps", "fps-120.mp4", _ffmpeg_from_source("-vf", "fps=120", *X264)),
    Item("rotation", "rotation metadata (90 degrees, stream copied)", "rotated.mp4",
         lambda path, source: _ff("-display_rotation:v:0", "90", "-i", source, "-c", "copy", path)),
    Item("vfr", "variable frame rate (every 3rd frame for 1.5 s, then all)", "vfr.mp4",
         _ffmpeg_from_source("-vf", "select='gte(t,1.5)+not(mod(n,3))'", "-fps_mode", "vfr", *X264)),
    # --- over the limits
    Item("too-long", f"{LONG_S // 60} min {LONG_S % 60} s at 1 fps (64x48), over the default 10 min limit",
         "long.mp4", lambda path, source: _ff("-f", "lavfi", "-i", f"color=c=gray:s=64x48:r=1:d={LONG_S}",
                                              *X264, path),
         error=r"{name} is 10 min 20 s long; videos up to 10 min 0 s can be analysed\. Trim it", limit=True),
    Item("too-long-env", "a 3 s clip with HAR_MAX_VIDEO_SECONDS=2 (library and CLI)", "three-seconds.mp4",
         lambda path, source: shutil.copyfile(source, path),
         error=r"{name} is 3 s long; videos up to 2 s can be analysed\. Trim it", limit=True,
         env=(("HAR_MAX_VIDEO_SECONDS", "2"),)),
    Item("over-upload-limit", f"a file just over the app's upload limit ({UPLOAD_LIMIT_MB} MB)", "huge.mp4",
         _over_upload_limit, error=r"exceeds the maximum file size of \d+ bytes", limit=True, app_only=True),
    # --- links, served by ``serve`` on 127.0.0.1
    Item("link-timeout", f"a link whose server answers after {SLOW_S:g} s", link="/slow.mp4",
         error=r"Network failure or timeout while fetching the video: .*[Tt]imed? ?out"),
    Item("link-redirect-refused", "a link redirecting to a host that is not allowed", link="/redirect",
         error=r"The link led \(a redirect from '127\.0\.0\.1'\) to 'localhost', which is not an allowed host on this "
               r"server \(allowed: 127\.0\.0\.1:\*\)"),
)
BY_NAME = {item.name: item for item in ITEMS}


def build(dest: Path, source: Path = SOURCE) -> Path:
    """Write every file of the corpus into ``dest`` (about a second); return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ITEMS:
        if item.make is not None:
            item.make(dest / item.filename, source)
    return dest


class _Handler(http.server.SimpleHTTPRequestHandler):
    """``/slow.mp4`` answers after ``SLOW_S`` seconds; ``/redirect`` sends to ``localhost``: a loopback name that is
    not in the tests' HAR_ALLOWED_HOSTS, so refused before any connection, and harmless if it ever were followed."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/slow.mp4":
            time.sleep(SLOW_S)
            self.send_response(500)
            self.end_headers()
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/clip.mp4")
            self.end_headers()
        else:
            super().do_GET()

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: expected here
            pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving ``root`` and the misbehaving links; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()

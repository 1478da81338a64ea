"""A local web server for the tests that fetch links (tests/test_fetch.py, tests/test_guard.py): copies of shared
clips and endpoints that misbehave on purpose, on 127.0.0.1 and, for a "public" address, 127.0.0.2; the fixtures
that keep those tests on loopback; a fake resolver. A pytest plugin (tests/conftest.py's ``pytest_plugins``): its
fixtures are every test's, its helpers are imported by name.

No other host is ever contacted: :func:`loopback_only` fails a test whose process connected outside loopback, or
during which any process tried to leave the loopback-only namespace (tests/netns.py). Where a test needs a host that
resolves to a public address, :func:`fake_dns` answers 127.0.0.2 in this process and :func:`pretend_public` tells
the address rule to count 127.0.0.2 as public: nothing public is ever contacted.
"""

from __future__ import annotations

import functools
import http.server
import ipaddress
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from pathlib import Path

import pytest

from har.errors import FetchError
from har.links import hosts
from har.links.fetch import fetched

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucf101-6"
EXAMPLE = next((REPO / "examples").glob("v_Surfing_*.mp4"))  # a test-group clip both shipped models get right
CLIPS = {"short.mp4": DATA / "Archery" / "v_Archery_g08_c02.mp4",  # 4.6 s, 96 kB
         "long.mp4": DATA / "Archery" / "v_Archery_g08_c01.mp4",  # 14.5 s, 325 kB
         "surfing.mp4": EXAMPLE}
GETADDRINFO = socket.getaddrinfo  # the process's resolver, as it was before any fetch
# How often a server's loop looks whether it is asked to stop: shutdown() waits for that (0.5 s by default, per
# server; most tests here start and stop two)
POLL_S = 0.02


def _need_data() -> None:
    missing = [str(p) for p in CLIPS.values() if not p.is_file()]
    if missing:
        msg = f"shared data missing: {missing}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files plus a few endpoints that misbehave on purpose."""

    REDIRECTS = {
        "/redirect/same": "/short.mp4",  # same host: followed
        "/redirect/private": "http://10.0.0.1/x.mp4",  # a private address
        "/redirect/link-local": "http://169.254.169.254/latest/meta-data/",  # cloud metadata service
        "/redirect/localhost": "http://localhost:{port}/short.mp4",  # a name resolving to loopback
        "/redirect/other-host": "http://not-allowed.invalid/x.mp4",  # a host not in the allow list
    }

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.paths.append(self.path)
        if self.path in self.REDIRECTS:
            self.send_response(302)
            self.send_header("Location", self.REDIRECTS[self.path].format(port=self.server.server_port))
            self.end_headers()
        elif self.path == "/page.html":
            self._send(b"<html><head><title>No video here</title></head><body><p>Just text.</p></body></html>",
                       "text/html")
        elif self.path == "/two-videos.html":  # yt-dlp's generic extractor makes a playlist of these
            self._send(b'<html><body><video src="/short.mp4"></video><video src="/long.mp4"></video></body></html>',
                       "text/html")
        elif self.path in ("/segments.m3u8", "/playlist-as.mp4"):  # HLS whose segment is on another host
            body = (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXTINF:5.0,\n"
                    f"http://localhost:{self.server.server_port}/segment0.ts\n#EXT-X-ENDLIST\n").encode()
            self._send(body, "application/vnd.apple.mpegurl" if self.path.endswith(".m3u8") else "video/mp4")
        elif self.path == "/unsized.mp4":  # no Content-Length: the size is only known while downloading
            self.protocol_version = "HTTP/1.0"
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            self.wfile.write((Path(self.directory) / "long.mp4").read_bytes())
            self.close_connection = True
        elif self.path == "/slow.mp4":  # answers long after the client's timeout
            time.sleep(3)
            self.send_response(500)
            self.end_headers()
        else:
            super().do_GET()

    def _send(self, body: bytes, content_type: str) -> None:
        """A 200 answer of ``body``, sized."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def copyfile(self, source, outputfile) -> None:
        try:
            super().copyfile(source, outputfile)
        except (BrokenPipeError, ConnectionResetError):  # yt-dlp reads the head of a file and hangs up
            pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a server on 127.0.0.1 serving copies of shared clips; ``.paths`` lists requests."""
    _need_data()
    root = tmp_path_factory.mktemp("www")
    for name, src in CLIPS.items():
        shutil.copyfile(src, root / name)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    httpd.daemon_threads = True
    httpd.paths = []
    thread = threading.Thread(target=httpd.serve_forever, args=(POLL_S,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def loopback_only(monkeypatch, tmp_path, connections, no_way_out):
    """Fail on any connection outside 127.0.0.0/8; keep env limits at their defaults; temp dirs in tmp_path. Every
    test of the files that fetch links uses it (``pytestmark = pytest.mark.usefixtures("loopback_only")``)."""
    for name in ("HAR_ALLOWED_HOSTS", "HAR_MAX_VIDEO_SECONDS", "HAR_MAX_DOWNLOAD_MB", "HAR_YTDLP_COOKIES",
                 "HAR_FETCH_TIMEOUT_S", "HAR_FETCH_RETRIES", "HAR_FETCH_DEADLINE_S", "HAR_FETCH_MIN_RATE_KB_S"):
        monkeypatch.delenv(name, raising=False)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield
    outside = [a for a in connections if isinstance(a, tuple) and not ipaddress.ip_address(a[0]).is_loopback]
    assert not outside, f"connections outside loopback: {outside}"


def leftovers(tmp_path: Path) -> list[str]:
    """The download folders left in :func:`loopback_only`'s temporary directory."""
    return sorted(p.name for p in (tmp_path / "tmp").glob("har-fetch-*"))


class _Server(http.server.ThreadingHTTPServer):
    def server_bind(self) -> None:  # without HTTPServer's getfqdn(): 127.0.0.2 has no name, a DNS query would go out
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def serve(root: Path, host: str = "127.0.0.1", port: int = 0, handler=None) -> http.server.ThreadingHTTPServer:
    """``root`` served on ``host:port`` (0: a free port) by ``handler`` (default :class:`Handler`), in a thread."""
    httpd = _Server((host, port), functools.partial(handler or Handler, directory=str(root)))
    httpd.daemon_threads = True
    httpd.paths = []
    threading.Thread(target=httpd.serve_forever, args=(POLL_S,), daemon=True).start()
    return httpd


def pair(server, handler=None) -> tuple:
    """``server``'s files served again on 127.0.0.1 and on 127.0.0.2, on one port (by ``handler``)."""
    root = Path(server.RequestHandlerClass.keywords["directory"])
    first = serve(root, handler=handler)
    return first, serve(root, "127.0.0.2", first.server_port, handler)


def stop(*servers) -> None:
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def pretend_public(monkeypatch):
    """The address rule counts 127.0.0.2 as public (and every other loopback address as what it is)."""
    real = hosts._is_public
    monkeypatch.setattr(hosts, "_is_public", lambda ip: str(ip) == "127.0.0.2" or real(ip))


def fake_dns(monkeypatch, name: str, answer) -> list:
    """Resolve ``name`` to ``answer()`` (an IPv4 address) in this process; other names as usual. Returns the list of
    answers given, in order. ffmpeg, a process of its own, still resolves ``name`` through the system."""
    given: list = []

    def getaddrinfo(host, port, *args, **kwargs):
        if (host.decode() if isinstance(host, bytes) else str(host)).lower() != name:
            return GETADDRINFO(host, port, *args, **kwargs)
        ip = answer()
        given.append(ip)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def fetch_error(url: str, **kwargs) -> str:
    """The FetchError's message of fetching ``url``; "" when it was fetched (asserted after what matters more)."""
    try:
        with fetched(url, **kwargs):
            return ""
    except FetchError as exc:
        return str(exc)

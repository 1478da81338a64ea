"""The relay ffmpeg reads a section through: an HTTP server on 127.0.0.1 for one fetch, which fetches each media URL
it hands out through the fetch's checked handler (:class:`har.links.netguard.GuardedYDL`), and ffmpeg's options that
let it open nothing else (docs/security.md)."""

from __future__ import annotations

import http.server
import logging
import secrets
import socketserver
import threading
from dataclasses import dataclass

import yt_dlp
from yt_dlp.networking import Request
from yt_dlp.networking.exceptions import HTTPError, RequestError

from har.errors import FetchError

log = logging.getLogger("har.links.netguard")

SECTION_PROTOCOLS = ("http", "https")  # what a section may be read from: one file, which the relay can pass on
CANNOT_CUT = ("This video is only offered in a form that cannot be cut into a section here; fetch it without a "
              "start and end time.")
# Demuxers ffmpeg may use on a relayed section: containers of one file, none of which opens another URL (the mov
# demuxer's external references are off by default). Playlists (hls, dash, concat) are not among them.
FFMPEG_FORMATS = "mov,matroska,flv,mpegts,avi"

_FORWARD = ("range", "if-range", "user-agent", "accept", "accept-language", "referer", "origin")  # ffmpeg -> site
_BACK = ("content-type", "content-length", "content-range", "accept-ranges", "last-modified", "etag")  # site -> ffmpeg


@dataclass(frozen=True)
class _Target:
    url: str
    headers: dict


class _RelayHandler(http.server.BaseHTTPRequestHandler):
    server: _RelayServer

    def log_message(self, fmt, *args) -> None:
        log.debug("relay: " + fmt, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._relay("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._relay("HEAD")

    def _relay(self, method: str) -> None:
        target = self.server.targets.get(self.path)
        ydl = self.server.ydl
        if target is None or ydl is None:
            self.send_error(404)
            return
        headers = {**target.headers, **{k: v for k, v in self.headers.items() if k.lower() in _FORWARD},
                   "Accept-Encoding": "identity"}
        try:
            res = ydl.urlopen(Request(target.url, headers=headers, method=method))
        except HTTPError as exc:
            res = exc.response
        except RequestError as exc:  # refused by the guard, or a network failure: ffmpeg fails, the fetch says why
            log.info("relay: %s: %s", target.url, exc)
            self.send_error(502, "HAR Studio could not fetch this URL")
            return
        try:
            self.send_response(res.status)
            encoded = bool(res.headers.get("Content-Encoding"))
            for name in _BACK:
                value = res.headers.get(name)
                if value and not (encoded and name == "content-length"):
                    self.send_header(name, value)
            self.end_headers()
            while method == "GET" and (block := res.read(64 * 1024)):
                self.wfile.write(block)
                ydl.har_guard.count(len(block))  # the watchdog's measure of the transfer rate
        except (OSError, RequestError) as exc:  # ffmpeg hung up (it seeks by reconnecting), or the site did
            log.debug("relay: %s: %s", target.url, exc)
        finally:
            res.close()


class _RelayServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    targets: dict[str, _Target]
    ydl: yt_dlp.YoutubeDL | None

    def server_bind(self) -> None:  # HTTPServer's would look up the host's name (a DNS query): not needed
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class Relay:
    """An HTTP server on 127.0.0.1 (a free port) for one fetch: ``/<secret>/<n>`` is the n-th media URL handed to
    ffmpeg, fetched through the fetch's checked handler when ffmpeg asks. Use as a context manager."""

    def __init__(self) -> None:
        self._secret = secrets.token_urlsafe(16)
        self._server = _RelayServer(("127.0.0.1", 0), _RelayHandler)
        self._server.targets, self._server.ydl = {}, None
        self._thread = threading.Thread(target=self._server.serve_forever, name="har-relay", daemon=True)

    @property
    def ydl(self) -> yt_dlp.YoutubeDL | None:  # the fetch's GuardedYDL
        return self._server.ydl

    @ydl.setter
    def ydl(self, ydl: yt_dlp.YoutubeDL) -> None:
        self._server.ydl = ydl

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, fmt: dict) -> str:
        """The relay's URL for a format's media URL. Only plain http(s) files can be relayed: anything else (a
        playlist of fragments) would make ffmpeg open URLs of its own."""
        if fmt.get("protocol") not in SECTION_PROTOCOLS or not str(fmt.get("url", "")).startswith(("http://",
                                                                                                  "https://")):
            raise FetchError(CANNOT_CUT)  # (match_filter refused it before, in words for the user)
        path = f"/{self._secret}/{len(self._server.targets)}"
        self._server.targets[path] = _Target(fmt["url"], dict(fmt.get("http_headers") or {}))
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def owns(self, url: str) -> bool:
        """True for a URL this relay handed out."""
        host, port = self._server.server_address[:2]
        return url.startswith(f"http://{host}:{port}/{self._secret}/")

    def rewrite(self, info: dict) -> dict:
        """``info`` with the media URL(s) ffmpeg will open replaced by relay URLs."""
        if info.get("requested_formats"):
            return {**info, "requested_formats": [{**f, "url": self.add(f)} for f in info["requested_formats"]]}
        return {**info, "url": self.add(info)}


def ffmpeg_input_args(timeout_s: float) -> list[str]:
    """ffmpeg's options for a relayed input: a read timeout, the relay and nothing else (see the module docs)."""
    return ["-rw_timeout", str(int(timeout_s * 1e6)), "-protocol_whitelist", "http,tcp", "-max_redirects", "0",
            "-http_proxy", "", "-format_whitelist", FFMPEG_FORMATS]

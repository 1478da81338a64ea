"""Every connection of one fetch goes to an address that passed :func:`har.links.hosts.check_host`, whatever opens it.

Two ways out exist while yt-dlp works, and both are closed here:

- **yt-dlp's own requests** (the page, its API calls, redirects, the media, fragments), from whichever thread makes
  them (yt-dlp's fragment threads, the relay below, any helper): :class:`GuardedYDL` is a ``YoutubeDL`` whose request
  director holds a single handler, :class:`CheckedRH`. Its connections are opened by :meth:`Guard.connect`, which
  resolves the host once, applies the host rules to those very addresses and connects to one of them, never to a
  name: a name cannot answer one address to the check and another to the connection (DNS rebinding). No proxy is
  used, and nothing depends on which thread asks or on process-wide state (``socket.getaddrinfo`` is untouched).
- **ffmpeg**, which yt-dlp runs for sections. ffmpeg would resolve and connect by itself, after our check. Instead
  it is handed ``http://127.0.0.1:<port>/<secret>/<n>``, a :class:`Relay` in this process that fetches the real media
  URL through the same checked handler (Range requests passed on, redirects followed and checked there), and ffmpeg
  may open nothing else: ``-protocol_whitelist http,tcp``, ``-max_redirects 0``, no proxy, and only container
  demuxers that cannot open further URLs (``-format_whitelist``: no HLS/DASH/concat playlists).

This module imports yt-dlp's networking internals (``yt_dlp.networking._urllib``, pinned in requirements.txt): the
handler is yt-dlp's urllib handler with its connection factory replaced.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import logging
import secrets
import shutil
import socket
import socketserver
import threading
import urllib.request
from dataclasses import dataclass, field

import yt_dlp
from yt_dlp.networking import Request
from yt_dlp.networking._urllib import (
    DataHandler,
    HTTPCookieProcessor,
    HTTPDefaultErrorHandler,
    HTTPErrorProcessor,
    HTTPHandler,
    RedirectHandler,
    UnknownHandler,
    UrllibRH,
)
from yt_dlp.networking.exceptions import HTTPError, RequestError

from har.errors import FetchError
from har.links.hosts import check_host

log = logging.getLogger(__name__)

SECTION_PROTOCOLS = ("http", "https")  # what a section may be read from: one file, which the relay can pass on
CANNOT_CUT = ("This video is only offered in a form that cannot be cut into a section here; fetch it without a "
              "start and end time.")
# Demuxers ffmpeg may use on a relayed section: containers of one file, none of which opens another URL (the mov
# demuxer's external references are off by default). Playlists (hls, dash, concat) are not among them.
FFMPEG_FORMATS = "mov,matroska,flv,mpegts,avi"


class Refused(OSError):
    """Raised instead of a socket: the connection is never attempted. yt-dlp reports it as a network error; the
    fetch reports :attr:`Guard.refusal` instead."""


@dataclass
class Guard:
    """The rules of one fetch, applied to each connection it opens (any thread)."""

    allowed_hosts: tuple[str, ...]  # HAR_ALLOWED_HOSTS (FetchLimits.allowed_hosts)
    strict: bool  # also require every host to be allowed (generic extractor: redirects, embedded files)
    refusal: str | None = None  # the first refusal, reported to the user instead of yt-dlp's wrapped error
    hosts: list[str] = field(default_factory=list)  # every host connected to or refused, for logs and tests
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def connect(self, address: tuple, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None) -> socket.socket:
        """``socket.create_connection``, to an address that passed the host rules (resolved once, here)."""
        host, port = address[0], address[1]
        name = host.decode() if isinstance(host, bytes) else str(host)
        with self._lock:
            self.hosts.append(name)
        try:
            infos = check_host(name, port, self.allowed_hosts, strict=self.strict, via="The link led")
        except FetchError as exc:
            with self._lock:
                self.refusal = self.refusal or str(exc)
            # INFO, not WARNING: the refusal is the error the caller gets (the CLI would print it twice)
            log.info("refused connection to %s: %s", name, exc)
            raise Refused(f"refused by HAR Studio: {exc}") from None
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"no address for {name}")


class _CheckedHTTPHandler(HTTPHandler):
    """yt-dlp's urllib HTTP(S) handler whose connections are opened by :meth:`Guard.connect` (TLS still checks the
    certificate against the host name)."""

    def __init__(self, guard: Guard, **kwargs):
        super().__init__(**kwargs)
        self._guard = guard

    def _connection(self, cls, *args, **kwargs):
        conn = cls(*args, **kwargs)
        conn._create_connection = self._guard.connect  # what HTTPConnection.connect calls
        return conn

    def http_open(self, req):
        return self.do_open(functools.partial(self._connection, http.client.HTTPConnection), req)

    def https_open(self, req):
        return self.do_open(functools.partial(self._connection, http.client.HTTPSConnection), req,
                            context=self._context)


class CheckedRH(UrllibRH):
    """The only request handler of a :class:`GuardedYDL`: http, https and data URLs, direct connections only (a
    proxy would resolve the real host itself), every connection through the fetch's :class:`Guard`."""

    _SUPPORTED_URL_SCHEMES = ("http", "https", "data")
    RH_NAME = "checked"

    def __init__(self, *, guard: Guard, **kwargs):
        kwargs["enable_file_urls"] = False
        super().__init__(**kwargs)
        self.guard = guard

    def _check_proxies(self, proxies) -> None:
        pass  # proxies are ignored, never used (see _get_proxies)

    def _get_proxies(self, request) -> dict:
        return {}

    def _create_instance(self, proxies, cookiejar, legacy_ssl_support=None):
        # UrllibRH's opener without its proxy, FTP and file handlers, with the checked HTTP handler
        opener = urllib.request.OpenerDirector()
        for handler in (
            _CheckedHTTPHandler(self.guard, debuglevel=int(bool(self.verbose)), source_address=self.source_address,
                                context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support)),
            HTTPCookieProcessor(cookiejar), DataHandler(), UnknownHandler(), HTTPDefaultErrorHandler(),
            HTTPErrorProcessor(), RedirectHandler(),
        ):
            opener.add_handler(handler)
        opener.addheaders = []
        return opener


class GuardedYDL(yt_dlp.YoutubeDL):
    """A ``YoutubeDL`` whose requests all go through one :class:`CheckedRH` bound to ``guard``; with a ``relay``,
    whatever ffmpeg is given to download (a section) is read through it."""

    def __init__(self, params: dict, guard: Guard, relay: Relay | None = None):
        self.har_guard, self.har_relay = guard, relay  # before __init__, which may already send requests
        super().__init__(params)
        if relay is not None:
            relay.ydl = self

    @functools.cached_property
    def _request_director(self):
        return self.build_request_director([functools.partial(CheckedRH, guard=self.har_guard)])

    def dl(self, name, info, subtitle=False, test=False):
        if self.har_relay is not None and not subtitle:
            info = self.har_relay.rewrite(info)
        return super().dl(name, info, subtitle, test)


# --- the relay ffmpeg reads through ----------------------------------------------------------------------------

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
            if method == "GET":
                shutil.copyfileobj(res, self.wfile, 64 * 1024)
        except (OSError, RequestError) as exc:  # ffmpeg hung up (it seeks by reconnecting), or the site did
            log.debug("relay: %s: %s", target.url, exc)
        finally:
            res.close()


class _RelayServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    targets: dict[str, _Target]
    ydl: GuardedYDL | None

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
    def ydl(self) -> GuardedYDL | None:
        return self._server.ydl

    @ydl.setter
    def ydl(self, ydl: GuardedYDL) -> None:
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

    def rewrite(self, info: dict) -> dict:
        """``info`` with the media URL(s) ffmpeg will open replaced by relay URLs."""
        if info.get("requested_formats"):
            return {**info, "requested_formats": [{**f, "url": self.add(f)} for f in info["requested_formats"]]}
        return {**info, "url": self.add(info)}


def ffmpeg_input_args(timeout_s: float) -> list[str]:
    """ffmpeg's options for a relayed input: a read timeout, the relay and nothing else (see the module docs)."""
    return ["-rw_timeout", str(int(timeout_s * 1e6)), "-protocol_whitelist", "http,tcp", "-max_redirects", "0",
            "-http_proxy", "", "-format_whitelist", FFMPEG_FORMATS]

"""Every connection of one fetch goes to an address that passed :func:`har.links.hosts.check_host`, whatever opens it.

Three ways out exist while yt-dlp works, and all are closed here:

- **yt-dlp's own requests** (the page, its API calls, redirects, the media, fragments), from whichever thread makes
  them (yt-dlp's fragment threads, the relay below, any helper): :class:`GuardedYDL` is a ``YoutubeDL`` whose request
  director holds a single handler, :class:`CheckedRH`. Its connections are opened by :meth:`Guard.connect`, which
  resolves the host once, applies the host rules to those very addresses and connects to one of them, never to a
  name: a name cannot answer one address to the check and another to the connection (DNS rebinding). No proxy is
  used, and nothing depends on which thread asks or on process-wide state (``socket.getaddrinfo`` is untouched).
- **ffmpeg**, which yt-dlp runs for sections. ffmpeg would resolve and connect by itself, after our check. Instead
  it is handed ``http://127.0.0.1:<port>/<secret>/<n>``, a relay in this process (:mod:`har.links.relay`) that
  fetches the real media URL through the same checked handler (Range requests passed on, redirects followed and
  checked there), and ffmpeg may open nothing else: ``-protocol_whitelist http,tcp``, ``-max_redirects 0``, no
  proxy, and only container demuxers that cannot open further URLs (``-format_whitelist``: no HLS/DASH/concat).
- **Any other hand-off to an external program.** yt-dlp's HLS downloader hands a whole stream to ffmpeg when it
  meets what it cannot do itself (an encryption method, a live playlist); other downloaders (aria2c, curl, wget)
  would connect by themselves too. Every external downloader of a :class:`GuardedYDL` goes through
  :meth:`GuardedYDL.handoff` first (yt-dlp's ``ExternalFD.real_download``, wrapped once at import; other
  ``YoutubeDL`` objects are untouched), which lets only ffmpeg on relay URLs run and refuses the rest, naming it.

Redirects are checked as they come (:class:`_CheckedRedirectHandler`): only to http(s), and never from an allowed
host to one that is not allowed, whichever extractor handles the link. :meth:`Guard.stop` ends a fetch from another
thread (:mod:`har.links.watchdog`: the deadline, the minimum rate): its open connections are shut down and no new one
is made.

This module imports yt-dlp's networking internals (``yt_dlp.networking._urllib``, pinned in requirements.txt): the
handler is yt-dlp's urllib handler with its connection factory replaced.
"""

from __future__ import annotations

import functools
import http.client
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import yt_dlp
from yt_dlp.downloader.external import ExternalFD, FFmpegFD
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

from har.errors import FetchError
from har.links.hosts import check_host, host_allowed, norm_host

if TYPE_CHECKING:
    from har.links.relay import Relay

log = logging.getLogger(__name__)



class Refused(OSError):
    """Raised instead of a socket: the connection is never attempted. yt-dlp reports it as a network error; the
    fetch reports :attr:`Guard.refusal` instead."""


def _port(parts) -> int:
    try:
        return parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:  # a port that is not a number: no connection can be made to it
        return 0


@dataclass
class Guard:
    """The rules of one fetch, applied to each connection it opens (any thread)."""

    allowed_hosts: tuple[str, ...]  # HAR_ALLOWED_HOSTS (FetchLimits.allowed_hosts)
    strict: bool  # also require every host to be allowed (all but the trusted extractors: fetch.TRUSTED_EXTRACTORS)
    refusal: str | None = None  # the first refusal, reported to the user instead of yt-dlp's wrapped error
    hosts: list[str] = field(default_factory=list)  # every host connected to or refused, for logs and tests
    received: int = 0  # media bytes received so far (progress hooks, the relay): the watchdog's measure
    stopped: bool = False  # set by stop(): no new connection
    _sockets: list[tuple[int, int]] = field(default_factory=list, repr=False)  # (fd, inode) of each connection
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refuse(self, message: str) -> Refused:
        """Record ``message`` (the first one is what the user reads) and return the error to raise."""
        with self._lock:
            self.refusal = self.refusal or message
        # INFO, not WARNING: the refusal is the error the caller gets (the CLI would print it twice)
        log.info("refused: %s", message)
        return Refused(f"refused by HAR Studio: {message}")

    def count(self, n: int) -> None:
        with self._lock:
            self.received += n

    def stop(self, message: str) -> None:
        """End the fetch from any thread: ``message`` becomes its error, open connections are shut down (a read
        blocked on them returns at once), new ones are refused."""
        with self._lock:
            self.refusal = self.refusal or message
            self.stopped = True
            opened, self._sockets = self._sockets, []
        log.info("stopped: %s", message)
        for fd, inode in opened:
            try:  # a duplicate of the descriptor, checked to be the same socket (the number may have been reused)
                dup = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            try:
                if os.fstat(dup.fileno()).st_ino == inode:
                    dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                dup.close()

    def check_redirect(self, old_url: str, new_url: str) -> None:
        """A redirect goes to http(s) only, and never from an allowed host to a host (and port) that is not."""
        old, new = urlsplit(old_url), urlsplit(new_url)
        old_host = norm_host(old.hostname or "")
        via = f"The link led (a redirect from '{old_host}')"
        scheme = new.scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.URLError(self.refuse(
                f"{via} to a {scheme}:// address ('{new_url[:80]}'): only http:// and https:// addresses are "
                "fetched on this server."))
        if host_allowed(old_host, self.allowed_hosts, _port(old)):
            try:
                check_host(new.hostname or "", _port(new), self.allowed_hosts, via=via, resolve=False)
            except FetchError as exc:
                raise urllib.error.URLError(self.refuse(str(exc))) from None

    def connect(self, address: tuple, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None) -> socket.socket:
        """``socket.create_connection``, to an address that passed the host rules (resolved once, here)."""
        host, port = address[0], address[1]
        name = host.decode() if isinstance(host, bytes) else str(host)
        with self._lock:
            self.hosts.append(name)
            stopped = self.stopped
        if stopped:
            raise Refused(f"refused by HAR Studio: {self.refusal}")
        try:
            infos = check_host(name, port, self.allowed_hosts, strict=self.strict, via="The link led")
        except FetchError as exc:
            raise self.refuse(str(exc)) from None
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            with self._lock:
                self._sockets.append((sock.fileno(), os.fstat(sock.fileno()).st_ino))
                del self._sockets[:-64]  # the latest connections are the ones still open (one at a time here)
                stopped = self.stopped
            if stopped:  # stop() ran while this one was connecting
                sock.close()
                raise Refused(f"refused by HAR Studio: {self.refusal}")
            return sock
        raise error or OSError(f"no address for {name}")


class _CheckedRedirectHandler(RedirectHandler):
    """yt-dlp's redirect handler, with every redirect checked by :meth:`Guard.check_redirect` before it is followed
    (urllib would refuse a file:// redirect with a bare HTTP error and follow ftp:// to "unknown url type")."""

    def __init__(self, guard: Guard):
        super().__init__()
        self._guard = guard

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location:
            self._guard.check_redirect(req.full_url, urljoin(req.full_url, location))
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


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
            HTTPErrorProcessor(), _CheckedRedirectHandler(self.guard),
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

    def handoff(self, downloader: ExternalFD, info: dict) -> None:
        """Before an external program downloads: only ffmpeg reading relay URLs may run; any other hand-off (a whole
        HLS stream given to ffmpeg, aria2c, curl...) would connect to the site by itself and is refused."""
        urls = [str(f.get("url", "")) for f in info.get("requested_formats") or [info]]
        if isinstance(downloader, FFmpegFD) and self.har_relay is not None and all(map(self.har_relay.owns, urls)):
            return
        program = downloader.get_basename()
        protocol = info.get("protocol") or "?"
        what = (f"an HLS stream (protocol {protocol}) that yt-dlp's own downloader cannot read (encryption or "
                "another feature it lacks)" if str(protocol).startswith("m3u8") else f"a {protocol} stream")
        message = (f"This link offers the video only as {what}, which yt-dlp would hand to {program} to download; "
                   f"{program} would connect to the site by itself, outside this server's checks, so the download "
                   "was refused. Upload the clip instead.")
        self.har_guard.refuse(message)
        raise FetchError(message)


_external_real_download = ExternalFD.real_download


def _checked_real_download(self: ExternalFD, filename, info_dict):
    if isinstance(self.ydl, GuardedYDL):
        self.ydl.handoff(self, info_dict)
    return _external_real_download(self, filename, info_dict)


ExternalFD.real_download = _checked_real_download  # every external downloader, whoever picked it (HlsFD too)

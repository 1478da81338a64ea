"""Download a video from a link (YouTube and other sites) with yt-dlp, safely enough for a public server.

Who may be fetched. Only ``http(s)`` links, only to hosts in ``HAR_ALLOWED_HOSTS`` (default: YouTube's), and
never to a host that resolves to a loopback, private, link-local or otherwise non-public address unless that host
is listed by its exact name (a public server must not become a way into its own network: 169.254.169.254, the
router, a database on localhost). These rules live in one function, :func:`check_host`: :func:`check_url` applies
it to the link and says which rule refused it, and every connection of a fetch applies it again.

yt-dlp then makes many connections of its own: redirects, API calls, the CDN that holds the media, fragments, and
ffmpeg for sections. :mod:`har.links.netguard` routes every one of them through :func:`check_host`, whichever thread
opens it, and connects to the very addresses that were checked (no DNS-rebinding window); ffmpeg reads through a
relay in this process instead of connecting by itself (:mod:`har.links.relay`), and any other hand-off to an external
program is refused. Every host contacted must also be in the allow list (with its port), so a redirect to another site
is refused too, except for the few sites whose yt-dlp extractors we trust (:data:`TRUSTED_EXTRACTORS`: YouTube's),
whose media come from CDN hosts (``*.googlevideo.com``) that are not in the list: there only the address rule
applies, plus two checks: no redirect from an allowed host to one that is not, and the page yt-dlp ended on is still
an allowed host.

Limits come from :mod:`har.settings` (:class:`har.links.options.FetchLimits`, with yt-dlp's options); a deadline for
the whole fetch and a minimum transfer rate are kept by :mod:`har.links.watchdog`. Each download happens in its own
temporary directory, removed whatever happens: on an error, on SIGTERM in a program that has no handler of its own
(the CLI), and at exit for a fetch still running in another thread. docs/security.md says what is guarded and how
it is tested.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlsplit

from har.errors import FetchError, VideoError
from har.links.hosts import check_host, listed_exactly, norm_host
from har.links.options import FetchLimits, Job, check_section, too_large, too_long
from har.links.watchdog import Watchdog
from har.links.ytdlp_errors import explain, require_js_runtime
from har.progress import Progress, silent

__all__ = ["FetchLimits", "check_url", "download", "fetched", "is_url"]

log = logging.getLogger(__name__)

# yt-dlp extractors (by key prefix) whose sites may send us to hosts outside HAR_ALLOWED_HOSTS (their CDNs); every
# other extractor, which may accept links to any site, must stay on allowed hosts for every connection.
TRUSTED_EXTRACTORS = ("Youtube",)


def is_url(text: str) -> bool:
    """True when ``text`` is written as a link (``scheme://...``), as opposed to a file path."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text.strip()))


def _parse(url: str) -> tuple[str, str, int]:
    """How the link is written (no network): ``(normalized url, host, port)`` or :class:`FetchError`."""
    text = (url or "").strip()
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not text:
        raise FetchError("No link given: paste the address of a video, e.g. https://www.youtube.com/watch?v=...")
    if not is_url(text):
        # "www.youtube.com/watch?v=..." without its scheme is still clearly a link.
        if re.match(r"^[\w-]+(\.[\w-]+)+(:\d+)?/\S*$", text) or re.match(r"^www\.[\w-]+(\.[\w-]+)+\S*$", text):
            text = "https://" + text
        else:
            raise FetchError(f"'{shown}' is not a link: paste a full address starting with https://.")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"Only http:// and https:// links can be fetched; '{shown}' uses {scheme}://.")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        host = port = None
    if not host or (port is None and parts.netloc.endswith(":")):
        raise FetchError(f"'{shown}' is not a link: it has no valid host name.")
    return parts._replace(scheme=scheme).geturl(), norm_host(host), port or (443 if scheme == "https" else 80)


def check_url(url: str, limits: FetchLimits | None = None) -> str:
    """Validate a link for fetching and return it normalized (``https://`` added to ``youtube.com/...``).

    Raises :class:`FetchError` naming the rule that refused it: not a link, not http(s), host not in
    ``HAR_ALLOWED_HOSTS``, or a host resolving to a loopback/private/link-local/reserved address.
    """
    limits = limits or FetchLimits.from_env()
    normalized, host, port = _parse(url)
    try:
        # A host listed by its exact name may resolve anywhere (the operator chose it): judging it needs no lookup.
        check_host(host, port, limits.allowed_hosts, resolve=not listed_exactly(host, limits.allowed_hosts, port))
    except OSError as exc:
        raise FetchError(f"Could not find the server '{host}' (DNS lookup failed: {exc.strerror or exc}). Check "
                         "the link; if it is right, this server may have no internet connection.") from exc
    return normalized


# --- download ------------------------------------------------------------------------------------------------


def _extractor_key(url: str) -> str:
    """The yt-dlp extractor that will handle ``url`` ("Youtube", ..., "Generic" when none knows the site)."""
    from yt_dlp.extractor import gen_extractor_classes

    for ie in gen_extractor_classes():
        if ie.suitable(url):
            return ie.ie_key()
    return "Generic"


def _downloaded_file(info: dict | None, dest: Path) -> Path | None:
    for d in reversed((info or {}).get("requested_downloads") or []):
        path = d.get("filepath")
        if path and Path(path).is_file():
            return Path(path)
    return None


def download(url: str, dest_dir: str | os.PathLike, *, start_s: float | None = None, end_s: float | None = None,
             limits: FetchLimits | None = None, progress: Progress | None = None) -> Path:
    """Download the video at ``url`` into ``dest_dir`` and return its path.

    ``start_s``/``end_s``: only that section (seconds) is downloaded, by ffmpeg. ``progress(fraction, message)``
    is called as the download goes (fraction None when unknown). Raises :class:`FetchError` with a message a user
    can act on: link refused (and by which rule), unsupported site, video unavailable, sign-in or bot check,
    age-restricted, too long, too large, network failure or timeout.
    """
    import yt_dlp

    from har.links.netguard import Guard, GuardedYDL
    from har.links.relay import Relay

    limits = limits or FetchLimits.from_env()
    report = progress or silent
    check_section(start_s, end_s, limits)
    report(None, "Checking the link")
    normalized, _, _ = _parse(url)
    extractor = _extractor_key(normalized)
    if extractor.startswith("Youtube"):
        require_js_runtime()  # before any network: a clear message instead of "no formats"
    normalized = check_url(normalized, limits)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    trusted = extractor.startswith(TRUSTED_EXTRACTORS)
    guard = Guard(limits.allowed_hosts, strict=not trusted)  # every connection of the fetch, any thread
    job = Job(normalized, limits, guard, start_s, end_s, report)
    path: Path | None = None
    with _temporary("har-fetch-") as work:
        try:
            # A section is cut by ffmpeg, which reads through the relay (its only way out), never from the site.
            with Relay() if job.section else nullcontext() as relay, Watchdog(guard, limits) as job.watch, \
                    GuardedYDL(job.options(dest, work), guard, relay) as ydl:
                report(None, "Reading the video's details")
                info = ydl.extract_info(normalized, download=False)
                _check_info(info, limits)
                report(0.0, "Downloading a section with ffmpeg" if job.section else "Downloading")
                job.watch.downloading()
                info = ydl.process_ie_result(ydl.sanitize_info(info), download=True)
            if guard.stopped:  # a transfer cut short can look complete (no Content-Length)
                raise FetchError(guard.refusal)
            path = _downloaded_file(info, dest)
            if path is None:  # yt-dlp gives up silently on a file whose Content-Length exceeds max_filesize
                raise too_large(limits)
            _check_file(path, job)
            log.info("downloaded %s (%d bytes) from %s", path.name, path.stat().st_size, normalized)
            return path
        except yt_dlp.utils.YoutubeDLError as exc:
            raise explain(exc, guard, extractor, section=job.section) from exc
        except BaseException:
            if path is not None:
                path.unlink(missing_ok=True)
            raise


def _check_info(info: dict | None, limits: FetchLimits) -> None:
    if not info:
        raise FetchError("yt-dlp found no video behind this link.")
    if info.get("_type") in ("playlist", "multi_video"):
        raise FetchError("The link is a playlist or a channel: paste the link of a single video.")
    page = info.get("webpage_url")
    parts = urlsplit(page) if page else None
    if parts and parts.hostname:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        check_host(parts.hostname, port, limits.allowed_hosts, via="The link led", resolve=False)


def _check_file(path: Path, job: Job) -> None:
    """After download: the size and the duration that could not be known before (direct files, sections)."""
    from har.media.video import probe

    size = path.stat().st_size
    if size > job.limits.max_bytes:  # a section: ffmpeg stopped writing at the limit, the real size is unknown
        path.unlink(missing_ok=True)
        raise too_large(job.limits, None if job.section else size)
    try:
        duration = probe(path).duration_s
    except VideoError as exc:
        path.unlink(missing_ok=True)
        raise FetchError(f"The link gave a file that is not a readable video: {exc}") from exc
    slack = 0.5 if job.section else 0.0  # a cut ends on a frame boundary; containers round durations
    if duration > job.limits.max_seconds + slack:
        path.unlink(missing_ok=True)
        raise too_long(duration, job.limits, section=job.section)


@contextmanager
def fetched(url: str, *, start_s: float | None = None, end_s: float | None = None,
            limits: FetchLimits | None = None, progress: Progress | None = None) -> Iterator[Path]:
    """Download ``url`` into a fresh temporary directory and yield the video's path; the directory is removed
    when the block ends, whatever happens (use it to predict, then let it go)."""
    with _temporary("har-fetch-") as tmp:
        yield download(url, tmp, start_s=start_s, end_s=end_s, limits=limits, progress=progress)


# --- temporary directories that go whatever happens ----------------------------------------------------------

_live: set[Path] = set()  # directories of fetches still running, removed at exit if their fetch could not
_live_lock = threading.Lock()


class Terminated(SystemExit):
    """SIGTERM during a fetch, in a program without a handler of its own: unwinds so that cleanups run."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated(128 + signum)


@contextmanager
def _temporary(prefix: str) -> Iterator[Path]:
    """A fresh temporary directory, removed when the block ends, on SIGTERM (in the main thread of a program whose
    SIGTERM does the default, ending at once: it ends by unwinding instead) and at exit (other threads)."""
    own_signal = (threading.current_thread() is threading.main_thread()
                  and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    if own_signal:
        signal.signal(signal.SIGTERM, _on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    with _live_lock:
        _live.add(tmp)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with _live_lock:
            _live.discard(tmp)
        if own_signal:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@atexit.register
def _remove_live() -> None:
    with _live_lock:
        for tmp in list(_live):
            shutil.rmtree(tmp, ignore_errors=True)

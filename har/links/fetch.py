"""Download a video from a link (YouTube and other sites) with yt-dlp, safely enough for a public server.

Who may be fetched. Only ``http(s)`` links, only to hosts in ``HAR_ALLOWED_HOSTS`` (default: YouTube's), and
never to a host that resolves to a loopback, private, link-local or otherwise non-public address unless that host
is listed by its exact name (a public server must not become a way into its own network: 169.254.169.254, the
router, a database on localhost). These rules live in one function, :func:`check_host`: :func:`check_url` applies
it to the link and says which rule refused it, and every connection of a fetch applies it again.

yt-dlp then makes many connections of its own: redirects, API calls, the CDN that holds the media, fragments, and
ffmpeg for sections. :mod:`har.links.netguard` routes every one of them through :func:`check_host`, whichever thread
opens it, and connects to the very addresses that were checked (no DNS-rebinding window); ffmpeg reads through a
relay in this process instead of connecting by itself (see there). When yt-dlp has no extractor of its own for the
link (its "generic" extractor: a direct file, a page with a ``<video>``), every host it contacts must also be in
the allow list, so a redirect to another site is refused too. For a site yt-dlp knows (YouTube), the media comes
from CDN hosts (``*.googlevideo.com``) that are not in the list: there only the address rule applies, plus a check
that the page yt-dlp ended on is still an allowed host.

Limits come from the environment (see :meth:`FetchLimits.from_env`). Each download happens in its own temporary
directory (:func:`fetched` removes it whatever happens). docs/security.md says what is guarded and how it is tested.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from har.errors import FetchError, HarError, VideoError
from har.links.hosts import DEFAULT_ALLOWED_HOSTS, HOSTS_ENV, check_host, listed_exactly, norm_entry, norm_host
from har.links.ytdlp_errors import explain, require_js_runtime
from har.media.ffmpeg import ffmpeg_exe
from har.media.limits import DEFAULT_MAX_VIDEO_SECONDS, max_video_seconds
from har.progress import Progress, silent

if TYPE_CHECKING:
    from har.links.netguard import Guard

log = logging.getLogger(__name__)

MAX_HEIGHT = 480  # the model sees 64x64: never download more than 480p
# One progressive file (video and audio together, no merging) at <= 480p, MP4 first; then any single file with
# video at <= 480p; then the smallest file with video. "<=?" also accepts formats whose height is unknown.
FORMAT = (
    f"b[height<=?{MAX_HEIGHT}][ext=mp4][protocol^=http]/b[height<=?{MAX_HEIGHT}]"
    f"/bv*[height<=?{MAX_HEIGHT}][ext=mp4]/bv*[height<=?{MAX_HEIGHT}]/wv*/w"
)
# A section: the same choice among single files that ffmpeg can read through the relay (no fragment playlists).
# Failing that, the usual choice, which match_filter then refuses with CANNOT_CUT (clearer than "no format").
SECTION_FORMAT = "/".join(f"{alt}[protocol~='^https?$']" for alt in FORMAT.split("/")) + "/" + FORMAT

@dataclass(frozen=True)
class FetchLimits:
    """What a download may cost and where it may go. Read from the environment by :meth:`from_env`."""

    max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS  # longest video (or section) accepted, s: HAR_MAX_VIDEO_SECONDS
    max_mb: float = 200.0  # largest download accepted, megabytes (10**6 bytes): HAR_MAX_DOWNLOAD_MB
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS  # exact names, "*.example.com" or "*": HAR_ALLOWED_HOSTS
    cookies: Path | None = None  # Netscape cookies.txt for sign-in / bot checks: HAR_YTDLP_COOKIES
    socket_timeout_s: float = 20.0  # connect / read timeout of each connection: HAR_FETCH_TIMEOUT_S
    retries: int = 3  # HTTP, fragment and extractor retries: HAR_FETCH_RETRIES

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_hosts", tuple(norm_entry(h) for h in self.allowed_hosts if h.strip()))

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1_000_000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FetchLimits:
        """Limits from ``HAR_MAX_VIDEO_SECONDS`` (600), ``HAR_MAX_DOWNLOAD_MB`` (200), ``HAR_ALLOWED_HOSTS``
        (comma-separated; YouTube's hosts), ``HAR_YTDLP_COOKIES``, ``HAR_FETCH_TIMEOUT_S`` (20) and
        ``HAR_FETCH_RETRIES`` (3). A value that is set but invalid raises :class:`FetchError`."""
        env = os.environ if environ is None else environ
        d = cls()
        hosts = env.get(HOSTS_ENV, "").strip()
        cookies = env.get("HAR_YTDLP_COOKIES", "").strip()
        if cookies and not Path(cookies).is_file():
            raise FetchError(f"HAR_YTDLP_COOKIES points to '{cookies}', which is not a file: export a cookies.txt "
                             "file (Netscape format) from a signed-in browser and set its path.")
        return cls(
            max_seconds=_max_seconds(env),
            max_mb=_env_number(env, "HAR_MAX_DOWNLOAD_MB", d.max_mb),
            allowed_hosts=tuple(re.split(r"[,\s]+", hosts)) if hosts else d.allowed_hosts,
            cookies=Path(cookies) if cookies else None,
            socket_timeout_s=_env_number(env, "HAR_FETCH_TIMEOUT_S", d.socket_timeout_s),
            retries=int(_env_number(env, "HAR_FETCH_RETRIES", d.retries, minimum=0)),
        )


def _max_seconds(env: Mapping[str, str]) -> float:
    """``HAR_MAX_VIDEO_SECONDS``, parsed where uploads read it too (one rule, one message), as a FetchError."""
    try:
        return max_video_seconds(env)
    except FetchError:
        raise
    except HarError as exc:
        raise FetchError(str(exc)) from None


def _env_number(env: Mapping[str, str], name: str, default: float, minimum: float | None = None) -> float:
    text = env.get(name, "").strip()
    if not text:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value > 0 if minimum is None else value >= minimum)
    if not ok:
        raise FetchError(f"{name} must be a {'positive' if minimum is None else 'non-negative'} number, "
                         f"not '{text}'.")
    return value


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
        check_host(host, None if listed_exactly(host, limits.allowed_hosts) else port, limits.allowed_hosts)
    except OSError as exc:
        raise FetchError(f"Could not find the server '{host}' (DNS lookup failed: {exc.strerror or exc}). Check "
                         "the link; if it is right, this server may have no internet connection.") from exc
    return normalized


# --- download ------------------------------------------------------------------------------------------------


class _YtdlpLogger:
    """yt-dlp's messages into ``logging``. Its errors become our FetchError, so they are only logged at INFO."""

    def debug(self, msg: str) -> None:
        if msg.startswith("[debug] "):
            log.debug("%s", msg[8:])
        else:  # yt-dlp's to_screen lines arrive here too
            log.info("%s", msg)

    def info(self, msg: str) -> None:
        log.info("%s", msg)

    def warning(self, msg: str) -> None:
        log.warning("%s", msg)

    def error(self, msg: str) -> None:
        log.info("%s", msg)


def _ffmpeg_location() -> str | None:
    """The ffmpeg binary (:func:`har.media.ffmpeg.ffmpeg_exe`), or None to let yt-dlp look for one itself."""
    try:
        return ffmpeg_exe()
    except HarError:
        return None


def _extractor_key(url: str) -> str:
    """The yt-dlp extractor that will handle ``url`` ("Youtube", ..., "Generic" when none knows the site)."""
    from yt_dlp.extractor import gen_extractor_classes

    for ie in gen_extractor_classes():
        if ie.suitable(url):
            return ie.ie_key()
    return "Generic"


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def _too_long(seconds: float, limits: FetchLimits, section: bool) -> FetchError:
    what = "The chosen section is" if section else "The video is"
    hint = "Choose a shorter section." if section else "Choose a start and end time to fetch a part of it."
    return FetchError(f"{what} {_fmt_s(seconds)} long; this server accepts at most {_fmt_s(limits.max_seconds)} "
                      f"(HAR_MAX_VIDEO_SECONDS). {hint}")


def _too_large(limits: FetchLimits, size: float | None = None) -> FetchError:
    what = f"The video is {size / 1e6:.3g} MB, more than" if size else "The video is larger than"
    return FetchError(f"{what} the {limits.max_mb:g} MB this server downloads (HAR_MAX_DOWNLOAD_MB). "
                      "Choose a start and end time to fetch a part of it, or a shorter video.")


def _check_section(start_s: float | None, end_s: float | None, limits: FetchLimits) -> None:
    for name, v in (("start", start_s), ("end", end_s)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise FetchError(f"The {name} time must be a number of seconds, 0 or more (got {v}).")
    if end_s is not None and end_s <= (start_s or 0):
        raise FetchError(f"The end time ({end_s:g} s) must come after the start time ({start_s or 0:g} s).")
    if end_s is not None and end_s - (start_s or 0) > limits.max_seconds:
        raise _too_long(end_s - (start_s or 0), limits, section=True)


@dataclass
class _Job:
    """One download's settings and the checks yt-dlp calls back into."""

    url: str
    limits: FetchLimits
    guard: Guard
    start_s: float | None
    end_s: float | None
    report: Progress

    @property
    def section(self) -> bool:
        return self.start_s is not None or self.end_s is not None

    def match_filter(self, info: dict, *, incomplete: bool) -> None:
        """yt-dlp's ``match_filter``: refuse live streams, too long or too large videos before downloading.

        Raising (rather than returning a reason, which yt-dlp only prints) stops the download with our message.
        """
        from har.links.netguard import CANNOT_CUT, SECTION_PROTOCOLS

        if info.get("_type", "video") != "video":
            return
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming", "post_live"):
            raise FetchError("The link is a live stream (or one that has not ended or not started yet): only "
                             "recorded videos can be fetched.")
        duration = info.get("duration")
        if duration:
            start = self.start_s or 0
            if start >= duration:
                raise FetchError(f"The start time ({start:g} s) is past the end of the video "
                                 f"({_fmt_s(duration)} long).")
            length = min(self.end_s or duration, duration) - start
            if length > self.limits.max_seconds:
                raise _too_long(length, self.limits, section=self.section)
        if incomplete:
            return
        size = info.get("filesize") or info.get("filesize_approx")
        if size and not self.section and size > self.limits.max_bytes:
            raise _too_large(self.limits, size)
        # Every connection is checked as it is made (har.links.netguard); a section must also be one file that ffmpeg
        # can
        # read through the relay (not a playlist of fragments it would fetch by itself).
        if self.section and any(f.get("url") and f.get("protocol") not in SECTION_PROTOCOLS
                                for f in info.get("requested_formats") or [info]):
            raise FetchError(CANNOT_CUT)

    def progress_hook(self, d: dict) -> None:
        status = d.get("status")
        done = d.get("downloaded_bytes") or 0
        total = d.get("total_bytes") or d.get("total_bytes_estimate")
        if status == "downloading":
            if done > self.limits.max_bytes or (d.get("total_bytes") or 0) > self.limits.max_bytes:
                raise _too_large(self.limits, d.get("total_bytes"))  # a length yt-dlp could not know in advance
            if total:
                self.report(min(done / total, 1.0), f"Downloading: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
            else:
                self.report(None, f"Downloading: {done / 1e6:.1f} MB")
        elif status == "finished":
            self.report(1.0, f"Downloaded {done / 1e6:.1f} MB" if done else "Downloaded")

    def options(self, dest: Path, work: Path) -> dict:
        from har.links.netguard import ffmpeg_input_args

        limits = self.limits
        opts: dict = {
            "format": FORMAT,
            "noplaylist": True,
            "extract_flat": "in_playlist",  # a playlist link is refused, not expanded into many extractions
            "max_filesize": limits.max_bytes,
            "match_filter": self.match_filter,
            "socket_timeout": limits.socket_timeout_s,
            "retries": limits.retries,
            "fragment_retries": limits.retries,
            "extractor_retries": limits.retries,
            "file_access_retries": 1,
            "concurrent_fragment_downloads": 1,  # one at a time: a 2-core server (any thread is checked)
            "logger": _YtdlpLogger(),
            "progress_hooks": [self.progress_hook],
            "noprogress": True,
            "quiet": True,
            "color": "no_color",
            "paths": {"home": str(dest), "temp": str(work)},
            "outtmpl": {"default": "%(title).80B [%(id).30B].%(ext)s"},
            "restrictfilenames": True,
            "windowsfilenames": True,
            "overwrites": True,
            "continuedl": False,
            "writethumbnail": False,
            "proxy": "",  # direct connections only: the guard must see the real host of every connection
            "external_downloader": {"default": "native"},  # yt-dlp's own, checked connections; ffmpeg: sections only
            "enable_file_urls": False,
            "js_runtimes": {"deno": {}, "node": {}, "bun": {}, "quickjs": {}},  # whichever is installed
            "remote_components": [],  # never fetch solver code from the internet at run time
            "external_downloader_args": {
                # ffmpeg (sections) reads only from the relay, with a timeout, and writes at most the size limit.
                "ffmpeg_i": ffmpeg_input_args(limits.socket_timeout_s),
                "ffmpeg_o": ["-fs", str(limits.max_bytes + 1)],
            },
        }
        ffmpeg = _ffmpeg_location()
        if ffmpeg:
            opts["ffmpeg_location"] = ffmpeg
        if self.section:
            from yt_dlp.utils import download_range_func

            opts["format"] = SECTION_FORMAT
            opts["download_ranges"] = download_range_func(None, [(self.start_s or 0, self.end_s or math.inf)])
            # Cut exactly where asked: a stream copy starts at the keyframe before the start, which in many videos
            # is seconds (or the whole video) earlier. Re-encoding a section of <= 480p is cheap at this preset.
            opts["force_keyframes_at_cuts"] = True
            opts["external_downloader_args"]["ffmpeg_o"] += ["-preset", "veryfast"]
        if limits.cookies:
            # yt-dlp writes the cookie jar back when it closes: give it a private copy, not the operator's file.
            copy = work / "cookies.txt"
            shutil.copyfile(limits.cookies, copy)
            opts["cookiefile"] = str(copy)
        return opts


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

    from har.links.netguard import Guard, GuardedYDL, Relay

    limits = limits or FetchLimits.from_env()
    report = progress or silent
    _check_section(start_s, end_s, limits)
    report(None, "Checking the link")
    normalized, _, _ = _parse(url)
    extractor = _extractor_key(normalized)
    if extractor.startswith("Youtube"):
        require_js_runtime()  # before any network: a clear message instead of "no formats"
    normalized = check_url(normalized, limits)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    guard = Guard(limits.allowed_hosts, strict=extractor == "Generic")  # every connection of the fetch, any thread
    job = _Job(normalized, limits, guard, start_s, end_s, report)
    work = Path(tempfile.mkdtemp(prefix="har-fetch-"))
    path: Path | None = None
    try:
        # A section is cut by ffmpeg, which reads through the relay (its only way out), never from the site itself.
        with Relay() if job.section else nullcontext() as relay, \
                GuardedYDL(job.options(dest, work), guard, relay) as ydl:
            report(None, "Reading the video's details")
            info = ydl.extract_info(normalized, download=False)
            _check_info(info, limits)
            report(0.0, "Downloading a section with ffmpeg" if job.section else "Downloading")
            info = ydl.process_ie_result(ydl.sanitize_info(info), download=True)
        path = _downloaded_file(info, dest)
        if path is None:  # yt-dlp gives up silently on a file whose Content-Length exceeds max_filesize
            raise _too_large(limits)
        _check_file(path, job)
        log.info("downloaded %s (%d bytes) from %s", path.name, path.stat().st_size, normalized)
        return path
    except yt_dlp.utils.YoutubeDLError as exc:
        raise explain(exc, guard, extractor) from exc
    except BaseException:
        if path is not None:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_info(info: dict | None, limits: FetchLimits) -> None:
    if not info:
        raise FetchError("yt-dlp found no video behind this link.")
    if info.get("_type") in ("playlist", "multi_video"):
        raise FetchError("The link is a playlist or a channel: paste the link of a single video.")
    page = info.get("webpage_url")
    host = urlsplit(page).hostname if page else None
    if host:
        check_host(host, None, limits.allowed_hosts, via="The link led")


def _check_file(path: Path, job: _Job) -> None:
    """After download: the size and the duration that could not be known before (direct files, sections)."""
    from har.media.video import probe

    size = path.stat().st_size
    if size > job.limits.max_bytes:  # a section: ffmpeg stopped writing at the limit, the real size is unknown
        path.unlink(missing_ok=True)
        raise _too_large(job.limits, None if job.section else size)
    try:
        duration = probe(path).duration_s
    except VideoError as exc:
        path.unlink(missing_ok=True)
        raise FetchError(f"The link gave a file that is not a readable video: {exc}") from exc
    slack = 0.5 if job.section else 0.0  # a cut ends on a frame boundary; containers round durations
    if duration > job.limits.max_seconds + slack:
        path.unlink(missing_ok=True)
        raise _too_long(duration, job.limits, section=job.section)


@contextmanager
def fetched(url: str, *, start_s: float | None = None, end_s: float | None = None,
            limits: FetchLimits | None = None, progress: Progress | None = None) -> Iterator[Path]:
    """Download ``url`` into a fresh temporary directory and yield the video's path; the directory is removed
    when the block ends, whatever happens (use it to predict, then let it go)."""
    tmp = Path(tempfile.mkdtemp(prefix="har-fetch-"))
    try:
        yield download(url, tmp, start_s=start_s, end_s=end_s, limits=limits, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""What one download may cost and how yt-dlp is told: :class:`FetchLimits` and a download's options (:class:`Job`).

:class:`FetchLimits` holds the link settings of :mod:`har.settings`; :class:`Job` turns them into yt-dlp's
documented options (``format``, ``max_filesize``, ``match_filter``, ``progress_hooks``, ...) and refuses, before
and while downloading, what is live, too long or too large, with messages a user can act on.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from har.errors import FetchError, HarError
from har.links.hosts import DEFAULT_ALLOWED_HOSTS, norm_entry
from har.media.ffmpeg import ffmpeg_exe
from har.progress import Progress
from har.settings import Settings, settings

if TYPE_CHECKING:
    from har.links.netguard import Guard

log = logging.getLogger("har.links.fetch")  # yt-dlp's messages, under the name of the module that downloads

MAX_HEIGHT = 480  # the models see small frames (config.json's size): never download more than 480p
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
    """What a download may cost and where it may go; :meth:`from_env` takes them from :mod:`har.settings`."""

    max_seconds: float = Settings.max_video_seconds  # longest video (or section) accepted, s: HAR_MAX_VIDEO_SECONDS
    max_mb: float = Settings.max_download_mb  # largest download accepted, megabytes (10**6 bytes): HAR_MAX_DOWNLOAD_MB
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS  # exact names, "*.example.com" or "*": HAR_ALLOWED_HOSTS
    cookies: Path | None = None  # Netscape cookies.txt for sign-in / bot checks: HAR_YTDLP_COOKIES
    socket_timeout_s: float = Settings.fetch_timeout_s  # connect / read timeout of each connection: HAR_FETCH_TIMEOUT_S
    retries: int = Settings.fetch_retries  # HTTP, fragment and extractor retries: HAR_FETCH_RETRIES
    deadline_s: float = Settings.fetch_deadline_s  # the whole fetch, retries included, s: HAR_FETCH_DEADLINE_S
    min_rate_kb_s: float = Settings.fetch_min_rate_kb_s  # slowest transfer accepted, kB/s: HAR_FETCH_MIN_RATE_KB_S
    rate_window_s: float = 15.0  # the rate is measured over the last this many seconds of a transfer

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_hosts", tuple(norm_entry(h) for h in self.allowed_hosts if h.strip()))

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1_000_000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FetchLimits:
        """The limits of ``environ``'s settings (default: this process's, :func:`har.settings.settings`). A value
        that is set but unusable raises :class:`har.settings.SettingsError`."""
        s = settings() if environ is None else Settings.from_env(environ)
        return cls(max_seconds=s.max_video_seconds, max_mb=s.max_download_mb, allowed_hosts=s.allowed_hosts,
                   cookies=s.ytdlp_cookies, socket_timeout_s=s.fetch_timeout_s, retries=s.fetch_retries,
                   deadline_s=s.fetch_deadline_s, min_rate_kb_s=s.fetch_min_rate_kb_s)


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


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def too_long(seconds: float, limits: FetchLimits, section: bool) -> FetchError:
    what = "The chosen section is" if section else "The video is"
    hint = "Choose a shorter section." if section else "Choose a start and end time to fetch a part of it."
    return FetchError(f"{what} {_fmt_s(seconds)} long; this server accepts at most {_fmt_s(limits.max_seconds)} "
                      f"(HAR_MAX_VIDEO_SECONDS). {hint}")


def too_large(limits: FetchLimits, size: float | None = None) -> FetchError:
    what = f"The video is {size / 1e6:.3g} MB, more than" if size else "The video is larger than"
    return FetchError(f"{what} the {limits.max_mb:g} MB this server downloads (HAR_MAX_DOWNLOAD_MB). "
                      "Choose a start and end time to fetch a part of it, or a shorter video.")


def check_section(start_s: float | None, end_s: float | None, limits: FetchLimits) -> None:
    for name, v in (("start", start_s), ("end", end_s)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise FetchError(f"The {name} time must be a number of seconds, 0 or more (got {v}).")
    if end_s is not None and end_s <= (start_s or 0):
        raise FetchError(f"The end time ({end_s:g} s) must come after the start time ({start_s or 0:g} s).")
    if end_s is not None and end_s - (start_s or 0) > limits.max_seconds:
        raise too_long(end_s - (start_s or 0), limits, section=True)


class Transfers(Protocol):
    """What a download tells its clock (:class:`har.links.watchdog.Watchdog`): a file's transfer starts, ends."""

    def downloading(self) -> None: ...

    def finished(self) -> None: ...


@dataclass
class Job:
    """One download's settings and the checks yt-dlp calls back into."""

    url: str
    limits: FetchLimits
    guard: Guard
    start_s: float | None
    end_s: float | None
    report: Progress
    watch: Transfers | None = None  # told when a transfer starts and ends (the minimum rate counts during one)
    _received: dict = field(default_factory=dict)  # bytes of each file so far, as yt-dlp reported them

    @property
    def section(self) -> bool:
        return self.start_s is not None or self.end_s is not None

    def match_filter(self, info: dict, *, incomplete: bool) -> None:
        """yt-dlp's ``match_filter``: refuse live streams, too long or too large videos before downloading.

        Raising (rather than returning a reason, which yt-dlp only prints) stops the download with our message.
        """
        from har.links.relay import CANNOT_CUT, SECTION_PROTOCOLS

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
                raise too_long(length, self.limits, section=self.section)
        if incomplete:
            return
        size = info.get("filesize") or info.get("filesize_approx")
        if size and not self.section and size > self.limits.max_bytes:
            raise too_large(self.limits, size)
        # Every connection is checked as it is made (har.links.netguard); a section must also be one file that
        # ffmpeg can read through the relay (not a playlist of fragments it would fetch by itself).
        if self.section and any(f.get("url") and f.get("protocol") not in SECTION_PROTOCOLS
                                for f in info.get("requested_formats") or [info]):
            raise FetchError(CANNOT_CUT)

    def progress_hook(self, d: dict) -> None:
        status = d.get("status")
        done = d.get("downloaded_bytes") or 0
        total = d.get("total_bytes") or d.get("total_bytes_estimate")
        if status == "downloading":
            name = d.get("tmpfilename") or d.get("filename")
            last = self._received.get(name, 0)
            self.guard.count(done - last if done >= last else done)  # less than before: a retry starts again
            self._received[name] = done
            if self.watch:
                self.watch.downloading()
            if done > self.limits.max_bytes or (d.get("total_bytes") or 0) > self.limits.max_bytes:
                raise too_large(self.limits, d.get("total_bytes"))  # a length yt-dlp could not know in advance
            if total:
                self.report(min(done / total, 1.0), f"Downloading: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
            else:
                self.report(None, f"Downloading: {done / 1e6:.1f} MB")
        elif status == "finished":
            if self.watch:
                self.watch.finished()
            self.report(1.0, f"Downloaded {done / 1e6:.1f} MB" if done else "Downloaded")

    def options(self, dest: Path, work: Path) -> dict:
        from har.links.relay import ffmpeg_input_args

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

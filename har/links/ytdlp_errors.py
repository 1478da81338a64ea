"""What yt-dlp needs on this server and what its errors mean: the JavaScript runtime YouTube requires, and the
:class:`FetchError` a user can act on for each failure (our own refusal first)."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from har.errors import FetchError

if TYPE_CHECKING:
    from har.links.netguard import Guard


@functools.cache
def js_runtime() -> str | None:
    """The JavaScript runtime yt-dlp can use for YouTube's challenges (e.g. ``"deno 2.9.8"``), or None.

    yt-dlp (since 2025.11) runs YouTube's player JavaScript in Deno, Node, Bun or QuickJS, with the solver
    scripts of the ``yt-dlp-ejs`` package; without both, YouTube yields no usable format.
    """
    import yt_dlp  # noqa: F401  (registers the runtimes)
    from yt_dlp.dependencies import yt_dlp_ejs
    from yt_dlp.globals import supported_js_runtimes

    if yt_dlp_ejs is None:
        return None
    for name, cls in supported_js_runtimes.value.items():
        info = cls().info
        if info is not None and info.supported:
            return f"{name} {info.version}"
    return None


def _js_requirements() -> str:
    try:
        from yt_dlp.globals import supported_js_runtimes

        parts = [f"{n.capitalize()} >= {'.'.join(map(str, c.MIN_SUPPORTED_VERSION))}"
                 for n, c in supported_js_runtimes.value.items()]
        return ", ".join(parts)
    except (ImportError, AttributeError):  # a yt-dlp without the registry
        return "Deno, Node, Bun or QuickJS"


def require_js_runtime() -> None:
    if js_runtime() is None:
        raise FetchError(
            "YouTube links cannot be fetched on this server: yt-dlp needs a JavaScript runtime "
            f"({_js_requirements()}) and the yt-dlp-ejs package, and did not find both. "
            "The operator can run `pip install deno yt-dlp-ejs` (both are in requirements.txt)."
        )


# --- yt-dlp's errors into ours -------------------------------------------------------------------------------

_AGE = ("confirm your age", "age-restricted", "age restricted", "inappropriate for some users", "age-gated",
        "age verification")
_GONE = ("private video", "this video is private", "has been removed", "video unavailable", "does not exist",
         "no longer available", "members-only", "members only", "terminated", "copyright", "has been deleted",
         "http error 404", "http error 410")
_BOT = ("not a bot", "confirm you're not", "confirm you’re not", "captcha", "http error 429", "too many requests",
        "sign in to confirm", "login required", "log in", "sign in", "requires authentication", "use --cookies")
_UNAVAILABLE = ("not available", "unavailable", "not found")
_NETWORK = ("timed out", "timeout", "unable to download webpage", "unable to download video data",
            "connection", "name or service not known", "temporary failure in name resolution",
            "network is unreachable", "no route to host", "getaddrinfo", "ssl", "eof occurred", "incompleteread",
            "content too short", "http error 5")
_NO_FORMAT = ("requested format is not available", "only images are available", "no video formats",
              "signature", "n challenge", "js challenge", "challenge solv")


def _reason(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig_msg", None) or exc)
    msg = re.sub(r"^(ERROR:\s*)?(\[[\w:]+\]\s*)?([\w-]+:\s+)?", "", msg.strip())
    msg = re.sub(r"\s+", " ", msg)
    return msg if len(msg) <= 300 else msg[:297] + "..."


def explain(exc: Exception, guard: Guard, extractor: str, section: bool = False) -> FetchError:
    """The FetchError for a yt-dlp failure: our own refusal first, then yt-dlp's error classified. ``section``: a
    start or end time was asked for (ffmpeg then cut the video)."""
    if guard.refusal:
        return FetchError(guard.refusal)
    from yt_dlp.networking.exceptions import TransportError
    from yt_dlp.utils import GeoRestrictedError, UnsupportedError

    chain: list[BaseException] = [exc]
    cause = getattr(exc, "exc_info", None)
    cause = cause[1] if cause and cause[1] is not None else None
    while cause is not None and cause not in chain and len(chain) < 8:
        chain.append(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = " ".join(str(c) for c in chain).lower()
    reason = _reason(chain[1] if len(chain) > 1 else exc)
    youtube = extractor.startswith("Youtube")

    def has(words: tuple[str, ...]) -> bool:
        return any(w in text for w in words)

    if any(isinstance(c, UnsupportedError) for c in chain) or "unsupported url" in text:
        return FetchError("This site is not supported: yt-dlp found no video it can download at this link. "
                          "Paste the link of a video page, or of a video file.")
    if "cookie" in text and ("load" in text or "netscape" in text or "invalid" in text):
        return FetchError(f"The cookies file in HAR_YTDLP_COOKIES could not be used: {reason}")
    if has(_AGE):
        return FetchError("This video is age-restricted: it can only be fetched with the cookies of a signed-in "
                          "adult account (the operator can point HAR_YTDLP_COOKIES to a cookies.txt file).")
    if any(isinstance(c, GeoRestrictedError) for c in chain):
        return FetchError(f"This video is not available in this server's country: {reason}")
    # "Private video. Sign in if you've been granted access" is about the video, not about this server: first.
    if has(_GONE):
        return FetchError(f"The video is unavailable (private, removed, or never existed): {reason}")
    if has(_BOT):
        site = "YouTube" if youtube else "The site"
        return FetchError(
            f"{site} asked for a sign-in or a check that this server is not a bot. YouTube blocks many datacenter "
            "addresses (cloud servers, Hugging Face Spaces): try the video on a machine at home, or the operator "
            f"can point HAR_YTDLP_COOKIES to a cookies.txt file exported from a signed-in browser. ({reason})")
    if "ffmpeg exited" in text and section:  # the relay's guard refusal came first; this is the file itself
        return FetchError("ffmpeg could not cut a section from what this link gave: it is not a video file that "
                          f"can be read here. Fetch it without a start and end time. ({reason})")
    if "ffmpeg exited" in text:
        return FetchError(f"ffmpeg could not read the video this link gave: it is not a video file that can be read "
                          f"here. ({reason})")
    if has(_NO_FORMAT):
        if youtube:
            return FetchError("YouTube offered no downloadable format for this video. yt-dlp may need an update, "
                              f"or its JavaScript runtime ({js_runtime() or 'none found'}) failed. ({reason})")
        return FetchError(f"The site offered no downloadable video format for this link. ({reason})")
    if has(_UNAVAILABLE):
        return FetchError(f"The video is unavailable: {reason}")
    if any(isinstance(c, (TransportError, TimeoutError, ConnectionError)) for c in chain) or has(_NETWORK):
        return FetchError(f"Network failure or timeout while fetching the video: {reason}. Try again later.")
    return FetchError(f"The video could not be fetched: {reason}")

"""Limits shared by every way a video comes in (upload, URL, command line), read from the environment per call."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from har.errors import HarError, VideoError

MAX_VIDEO_SECONDS_ENV = "HAR_MAX_VIDEO_SECONDS"
DEFAULT_MAX_VIDEO_SECONDS = 600.0  # 10 minutes: a long video costs one decoding pass, bounded on a 2-core CPU


def max_video_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The longest video we accept, in seconds: ``$HAR_MAX_VIDEO_SECONDS`` (of ``environ``, default the process
    environment), default 600. Raises :class:`HarError` for a value that is set but not a positive number."""
    raw = (os.environ if environ is None else environ).get(MAX_VIDEO_SECONDS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_VIDEO_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise HarError(f"{MAX_VIDEO_SECONDS_ENV}={raw!r} is not a positive number of seconds.")
    return value


def max_frames(fps: float, environ: Mapping[str, str] | None = None) -> int:
    """Frames a pass may decode before a video counts as too long: the limit's worth at ``fps``, 2 % more (a
    container may understate its length a little)."""
    return int(max_video_seconds(environ) * fps * 1.02) + 1


def describe_seconds(seconds: float) -> str:
    """``754.2`` -> ``"12 min 34 s"``; ``42`` -> ``"42 s"``."""
    s = int(round(seconds))
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def check_length(path: Path, seconds: float) -> None:
    """Raise :class:`VideoError` when the video at ``path`` is ``seconds`` long, more than the limit."""
    limit = max_video_seconds()
    if seconds > limit:
        raise VideoError(
            f"'{path.name}' is {describe_seconds(seconds)} long; videos up to {describe_seconds(limit)} can be "
            "analysed. Trim it or pick a shorter part."
        )

"""Limits shared by every way a video comes in (upload, URL, command line), from :func:`har.settings.settings`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from har.errors import VideoError
from har.settings import Settings, settings

# 10 minutes: a long video costs one decoding pass, bounded on a 2-core CPU
DEFAULT_MAX_VIDEO_SECONDS = Settings.max_video_seconds


def max_video_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The longest video we accept, in seconds: ``HAR_MAX_VIDEO_SECONDS`` of ``environ`` (default: this process's
    settings), default 600. Raises :class:`har.settings.SettingsError` for a value that is not a positive number."""
    return (settings() if environ is None else Settings.from_env(environ)).max_video_seconds


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

"""The ffmpeg binary, found once for everything that runs it (annotated copies, section downloads).

Debian's ``ffmpeg`` when it is on PATH, else the binary shipped in the ``imageio-ffmpeg`` wheel (a Space may only
have that one).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from har.errors import HarError


def ffmpeg_exe() -> str:
    """The path of the ffmpeg binary to run. Raises :class:`HarError` when there is none."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise HarError("No ffmpeg found to write the annotated video: install ffmpeg or `pip install "
                       "imageio-ffmpeg`.") from exc


def audio_codec(path: Path) -> str | None:
    """The codec of the first audio stream at ``path`` as ffmpeg names it (``aac``, ``opus``, ...); None when it
    has none or ffmpeg cannot tell. ffmpeg is asked to open the file only (about 50 ms)."""
    try:
        done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                              text=True, errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Stream #\d+:\d+\S*: Audio: (\w+)", done.stderr)
    return m.group(1) if m else None

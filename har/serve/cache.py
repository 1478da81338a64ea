"""Keep a folder under a size cap: the app's Gradio cache (uploads, annotated copies, result files).

Gradio sweeps its cache by age only (files older than an hour, every 15 minutes), so a burst of large uploads
could fill a public server's disk. :func:`sweep` deletes the oldest files first until the folder holds at most
``HAR_MAX_CACHE_MB`` (:func:`max_cache_bytes`); files younger than ``min_age_s`` are left alone, being most
likely the uploads and outputs of requests still running.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from har.settings import Settings, settings

log = logging.getLogger(__name__)

MIN_AGE_S = 30.0  # a younger file may belong to a request that is still running


def max_cache_bytes(environ: Mapping[str, str] | None = None) -> int:
    """``HAR_MAX_CACHE_MB`` of ``environ`` (default: this process's settings; 2000 when unset) in bytes
    (MB = 10**6 bytes). Raises :class:`har.settings.SettingsError` for a value that is not a positive number."""
    mb = (settings() if environ is None else Settings.from_env(environ)).max_cache_mb
    return int(mb * 1_000_000)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def sweep(folder: str | os.PathLike, max_bytes: int, min_age_s: float = MIN_AGE_S) -> list[Path]:
    """Delete the oldest files (by modification time) under ``folder`` until it holds at most ``max_bytes``,
    sparing files younger than ``min_age_s``; folders left empty go too. Returns the files deleted."""
    root = Path(folder)
    files = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                files.append((st.st_mtime, st.st_size, p))
        except OSError:  # deleted meanwhile
            continue
    total = sum(size for _, size, _ in files)
    now = time.time()
    removed = []
    for mtime, size, p in sorted(files, key=lambda f: f[0]):
        if total <= max_bytes or now - mtime < min_age_s:
            break
        try:
            p.unlink()
        except OSError:
            continue
        total -= size
        removed.append(p)
        parent = p.parent
        while parent != root and parent.is_relative_to(root):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent
    if removed:
        log.info("cache over %.0f MB: removed %d oldest file(s), %.0f MB left", max_bytes / 1e6, len(removed),
                 total / 1e6)
    return removed

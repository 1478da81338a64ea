"""Every ``HAR_*`` setting of HAR Studio, in one typed, frozen object parsed in one place.

:func:`settings` parses the process environment on first use and keeps the result; the app calls it before
anything slow starts, so a bad value stops start-up with one line. Every value that is set but unusable raises
:class:`SettingsError` in one style: ``NAME='value' is not <what is accepted>.`` docs/app.md documents each one.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from har.errors import HarError
from har.links.hosts import DEFAULT_ALLOWED_HOSTS, norm_entry

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"
RUNTIMES = ("auto", "keras", "onnx", "onnx-int8")  # har.serve.backends serves each


class SettingsError(HarError):
    """A ``HAR_*`` environment variable is set to a value that cannot be used."""


def _default_concurrency() -> int:
    # TensorFlow already spreads one forward pass over the cores: a couple of requests at once is plenty.
    return max(1, (os.cpu_count() or 2) // 2)


def _default_docs_url(environ: Mapping[str, str]) -> str | None:
    # Hugging Face sets SPACE_ID ("owner/name") in a Space: its files, docs/ among them, are browsable there.
    space = environ.get("SPACE_ID", "").strip()
    return f"https://huggingface.co/spaces/{space}/blob/main/docs/" if space else None


@dataclass(frozen=True)
class Settings:
    """The settings; field ``x`` is read from ``HAR_X`` (:func:`env_name`)."""

    # -- the models and the app's serving
    models_dir: Path = REPO_MODELS  # HAR_MODELS_DIR: the model directories (lrcn/, convlstm/)
    runtime: str = "auto"  # HAR_RUNTIME: auto (ONNX Runtime, int8 half where current, else TF), onnx, onnx-int8, keras
    concurrency: int = field(default_factory=_default_concurrency)  # HAR_CONCURRENCY: requests recognised at once
    queue_size: int = 16  # HAR_QUEUE_SIZE: requests waiting in the app's queue
    max_upload_mb: int = 200  # HAR_MAX_UPLOAD_MB: largest upload, megabytes
    max_batch: int = 10  # HAR_MAX_BATCH: videos per Test many request
    max_cache_mb: float = 2000.0  # HAR_MAX_CACHE_MB: Gradio's cache of uploads and outputs, megabytes (10**6 bytes)
    docs_url: str | None = None  # HAR_DOCS_URL: the docs folder the app links to (default: the Space's docs/)
    # -- every video, however it comes in
    max_video_seconds: float = 600.0  # HAR_MAX_VIDEO_SECONDS: longest video (or link section) accepted, seconds
    # -- links (har.links)
    max_download_mb: float = 200.0  # HAR_MAX_DOWNLOAD_MB: largest download, megabytes (10**6 bytes)
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS  # HAR_ALLOWED_HOSTS: names, "*.example.com", "*"; ":port"
    ytdlp_cookies: Path | None = None  # HAR_YTDLP_COOKIES: a Netscape cookies.txt for sign-in and bot checks
    fetch_timeout_s: float = 20.0  # HAR_FETCH_TIMEOUT_S: connect / read timeout of each connection, seconds
    fetch_retries: int = 3  # HAR_FETCH_RETRIES: HTTP, fragment and extractor retries
    fetch_deadline_s: float = 300.0  # HAR_FETCH_DEADLINE_S: longest a whole fetch may take, retries included, s
    fetch_min_rate_kb_s: float = 10.0  # HAR_FETCH_MIN_RATE_KB_S: slowest transfer accepted (over 15 s), kB/s
    max_downloads: int = 2  # HAR_MAX_DOWNLOADS: links the app downloads at once (more are told "busy")
    # -- teaching new actions in the app (har.teach, ui/teach.py)
    teach_models: int = 4  # HAR_TEACH_MODELS: visitors' taught models the server holds at once
    teach_minutes: float = 60.0  # HAR_TEACH_MINUTES: a visitor's taught model is removed this long after teaching
    teach_examples: int = 10  # HAR_TEACH_EXAMPLES: most example clips per action in the app
    # -- training data
    cache_dir: Path = Path.home() / ".cache" / "har-studio" / "frames"  # HAR_CACHE_DIR: sampled frames' cache

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse every setting from ``environ`` (default: the process environment); an unset or empty variable
        takes its default. Raises :class:`SettingsError` for the first unusable value."""
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name), "").strip()
            if raw:
                values[f.name] = _PARSERS[f.name](env_name(f.name), raw)
        values.setdefault("docs_url", _default_docs_url(env))
        return cls(**values)


def env_name(name: str) -> str:
    """``max_batch`` -> ``HAR_MAX_BATCH``."""
    return "HAR_" + name.upper()


def _refuse(name: str, raw: str, accepted: str) -> SettingsError:
    return SettingsError(f"{name}={raw!r} is not {accepted}.")


def _whole(least: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = least - 1
        if value < least:
            raise _refuse(name, raw, f"a whole number of at least {least}")
        return value
    return parse


def _positive(unit: str) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise _refuse(name, raw, f"a positive number of {unit}")
        return value
    return parse


def _runtime(name: str, raw: str) -> str:
    if raw not in RUNTIMES:
        raise _refuse(name, raw, f"one of {', '.join(RUNTIMES)}")
    return raw


def _hosts(name: str, raw: str) -> tuple[str, ...]:
    try:
        return tuple(norm_entry(h) for h in re.split(r"[,\s]+", raw) if h)
    except ValueError as exc:
        raise _refuse(name, raw, f"a list of hosts: {exc}") from None


def _file(name: str, raw: str) -> Path:
    if not Path(raw).is_file():
        raise _refuse(name, raw, "a file: export a cookies.txt file (Netscape format) from a signed-in browser and "
                      "set its path")
    return Path(raw)


def _url(name: str, raw: str) -> str:
    if not re.match(r"^https?://\S+$", raw):
        raise _refuse(name, raw, "an http(s) address")
    return raw if raw.endswith("/") else raw + "/"


_PARSERS: dict[str, Callable[[str, str], object]] = {
    "models_dir": lambda name, raw: Path(raw).expanduser(),
    "runtime": _runtime,
    "concurrency": _whole(1),
    "queue_size": _whole(1),
    "max_upload_mb": _whole(1),
    "max_batch": _whole(1),
    "max_cache_mb": _positive("megabytes"),
    "docs_url": _url,
    "max_video_seconds": _positive("seconds"),
    "max_download_mb": _positive("megabytes"),
    "allowed_hosts": _hosts,
    "ytdlp_cookies": _file,
    "fetch_timeout_s": _positive("seconds"),
    "fetch_retries": _whole(0),
    "fetch_deadline_s": _positive("seconds"),
    "fetch_min_rate_kb_s": _positive("kilobytes a second"),
    "max_downloads": _whole(1),
    "cache_dir": lambda name, raw: Path(raw).expanduser(),
    "teach_models": _whole(1),
    "teach_minutes": _positive("minutes"),
    "teach_examples": _whole(1),
}
assert set(_PARSERS) == {f.name for f in fields(Settings)}, "every setting needs its parser"


def settings() -> Settings:
    """This process's settings, parsed once per state of its ``HAR_*`` variables: once, for a server, whose
    environment does not change; again after a variable changed (tests set them as they go)."""
    return _parsed(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("HAR_") or k == "SPACE_ID")))


@functools.lru_cache(maxsize=4)
def _parsed(har_variables: tuple[tuple[str, str], ...]) -> Settings:
    return Settings.from_env(dict(har_variables))

"""The examples a model is taught from: checked, each turned into views of its clip as the model sees them.

``examples`` maps an action's name to its clips: video files, links, or ``(file-or-link, start_s, end_s)``.
Everything a visitor may get wrong is found before any work and named in the message: a name that is empty or
already a class, a broken or too short file, one clip given for two names. Each clip becomes :data:`VIEWS` views
of the model's frames, those its training clips had (:func:`har.data.features.clip_views`): as served, augmented
over the whole clip (position jitter, crop, flip, colour) and augmented temporal crops from the model's shortest
training window, so that the timeline's short windows are in distribution too. (Served, mirrored and unaugmented crops
alone taught the LRCN the nine other actions 8 points worse from 5 examples.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from har.data.features import DENSE_PER_FRAME
from har.data.features import VIEWS as VIEWS  # views per example: as served, augmented whole, augmented crops
from har.errors import HarError

MIN_EXAMPLE_S = 0.5  # a shorter clip holds too little of an action to learn from
NAME_CHARS = 60  # longest action name


@dataclass(frozen=True)
class Example:
    """One example clip of an action."""

    label: str  # the action's name
    source: str  # a file's path or a link
    start_s: float | None = None  # links only: from this second on
    end_s: float | None = None  # links only: up to this second
    link: bool = False

    @property
    def name(self) -> str:
        """How messages and the config name it: the file's name, or the link."""
        return self.source if self.link else Path(self.source).name


def checked_name(name: str, classes: Sequence[str]) -> str:
    """An action's name, stripped; a :class:`HarError` for one that is empty, too long or already a class."""
    text = " ".join(str(name).split())
    if not text:
        raise HarError("An action to teach needs a name: it is empty.")
    if len(text) > NAME_CHARS or any(ch in text for ch in ",\t\n/\\"):
        raise HarError(f"The action name '{text[:NAME_CHARS]}' is too long or holds a comma or slash: give a short "
                       f"name (at most {NAME_CHARS} characters).")
    same = [c for c in classes if c.lower() == text.lower()]
    if same:
        raise HarError(f"'{text}' is already a class of the model ({same[0]}): give the new action another name.")
    return text


def collect(examples: Mapping[str, Sequence], classes: Sequence[str]) -> list[Example]:
    """The examples of ``examples`` (name -> clips), checked by name (:func:`checked_name`); a name twice (in
    any case) or without clips is a :class:`HarError`."""
    from har.links.fetch import is_url

    if not examples:
        raise HarError("Nothing to teach: give at least one action with its example clips.")
    out: list[Example] = []
    seen: dict[str, str] = {}
    for raw, clips in examples.items():
        name = checked_name(raw, classes)
        if name.lower() in seen:
            raise HarError(f"The action '{name}' is given twice ('{seen[name.lower()]}' and '{raw}').")
        seen[name.lower()] = raw
        if isinstance(clips, (str, os.PathLike)):
            clips = [clips]
        if not clips:
            raise HarError(f"The action '{name}' has no example clip.")
        for clip in clips:
            source, start, end = (clip, None, None) if isinstance(clip, (str, os.PathLike)) else (*clip, None, None)[:3]
            text = str(source).strip()
            out.append(Example(name, text, start, end, is_url(text)))
    return out


@contextmanager
def local(example: Example, progress=None) -> Iterator[Path]:
    """The example's video file: itself, or its link downloaded for the block's length (through the link guard)."""
    from har.links.fetch import fetched

    if example.link:
        with fetched(example.source, start_s=example.start_s, end_s=example.end_s, progress=progress) as path:
            yield path
    else:
        with nullcontext(Path(example.source)) as path:
            yield path


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def clip_views(path: Path, example: Example, frames: int, size: int, min_window_s: float, seed: int) -> np.ndarray:
    """uint8 ``(VIEWS, frames, size, size, 3)`` of the example's clip at ``path``: as served, then augmented
    whole and augmented temporal crops (seeded by ``seed``). A :class:`HarError` naming the example for a broken
    or too short clip."""
    from har.media.limits import check_length
    from har.media.video import probe, sample_clip

    try:
        if not path.is_file():
            raise HarError(f"'{path}' does not exist.")
        info = probe(path)
        check_length(path, info.duration_s)
        if 0 < info.duration_s < MIN_EXAMPLE_S:
            raise HarError(f"it is {info.duration_s:.2f} s long; an example needs at least {MIN_EXAMPLE_S:g} s.")
        served = sample_clip(path, frames, size)  # (frames, size, size, 3) uint8
        dense = sample_clip(path, frames * DENSE_PER_FRAME, size)  # (frames * DENSE_PER_FRAME, ...)
    except HarError as exc:
        raise HarError(f"Example '{example.name}' of '{example.label}' cannot be used: {exc}") from exc
    from har.data.features import clip_views as training_views  # TensorFlow's image ops

    return training_views(dense, served, info.duration_s or len(dense) / 25.0, min_window_s, seed)

"""Index a folder-per-class video dataset, split it by group, cache sampled frames, feed tf.data.

Layout (UCF50/UCF101): ``ROOT/<Class>/<video>``, any video extension. UCF names clips
``v_<Class>_g<GG>_c<CC>``: all clips of one group are cut from one long video (same actor, same background), so
a group must never sit on both sides of a split. Group ids are per class (group 8 of Archery and group 8 of
Surfing are unrelated videos), so a group key is ``<Class>/g<GG>``; a clip without a UCF group id is its own group.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from har.config import Sampling
from har.errors import DatasetError, HarError
from har.media.video import VIDEO_EXTENSIONS, probe, sample_clip
from har.settings import settings

log = logging.getLogger(__name__)

_GROUP_RE = re.compile(r"_g(\d+)_c(\d+)", re.IGNORECASE)
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str  # class folder name
    group: str  # "<label>/g<GG>", or "<label>/<stem>" when the name carries no group id


@dataclass
class DatasetIndex:
    root: Path
    classes: tuple[str, ...]  # sorted class folder names; a label's integer id is its position here
    clips: list[Clip] = field(default_factory=list)

    def labels(self, clips: Sequence[Clip] | None = None) -> np.ndarray:
        ids = {c: i for i, c in enumerate(self.classes)}
        return np.array([ids[c.label] for c in (self.clips if clips is None else clips)], dtype=np.int32)

    def groups(self) -> dict[str, list[Clip]]:
        out: dict[str, list[Clip]] = defaultdict(list)
        for c in self.clips:
            out[c.group].append(c)
        return dict(out)


def group_of(path: Path, label: str) -> str:
    m = _GROUP_RE.search(path.stem)
    return f"{label}/g{int(m.group(1)):02d}" if m else f"{label}/{path.stem}"


def index_dataset(root: str | os.PathLike) -> DatasetIndex:
    """Every video under ``root/<Class>/`` (sorted), with its class and group. Raises :class:`DatasetError`."""
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"Dataset folder {r} does not exist or is not a folder.")
    class_dirs = sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))
    clips = []
    for d in class_dirs:
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                clips.append(Clip(f, d.name, group_of(f, d.name)))
    classes = tuple(sorted({c.label for c in clips}))
    if not classes:
        raise DatasetError(
            f"No videos found under {r}: expected one folder per class holding video files "
            f"({', '.join(VIDEO_EXTENSIONS[:5])}, ...)."
        )
    return DatasetIndex(r, classes, clips)


@dataclass(frozen=True)
class IndexReport:
    """What ``python -m har index`` prints."""

    classes: dict[str, dict[str, float]]  # class -> {"clips", "groups", "seconds"}
    clips: int
    groups: int
    seconds: float
    unreadable: list[tuple[str, str]]  # (path, reason)


def describe(index: DatasetIndex) -> IndexReport:
    """Clip counts, groups and durations per class (from container headers), and the files that do not open."""
    per: dict[str, dict[str, float]] = {c: {"clips": 0, "groups": 0, "seconds": 0.0} for c in index.classes}
    bad: list[tuple[str, str]] = []
    for clip, info in zip(index.clips, _map(_probe_or_error, index.clips), strict=True):
        if isinstance(info, str):
            bad.append((str(clip.path), info))
            continue
        per[clip.label]["clips"] += 1
        per[clip.label]["seconds"] += info.duration_s
    for g in index.groups():
        per[g.split("/")[0]]["groups"] += 1
    return IndexReport(
        classes=per,
        clips=sum(int(v["clips"]) for v in per.values()),
        groups=len(index.groups()),
        seconds=sum(v["seconds"] for v in per.values()),
        unreadable=bad,
    )


def _probe_or_error(clip: Clip):
    try:
        info = probe(clip.path)
    except HarError as exc:
        return str(exc)
    if info.frame_count <= 0:
        return "no frames reported by the container"
    return info


def _map(fn, items, workers: int | None = None, desc: str | None = None):
    """``fn`` over ``items`` on a thread pool (OpenCV decodes without the GIL), in order, with a progress bar."""
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(fn, items)
        if desc:
            from tqdm import tqdm

            results = tqdm(results, total=len(items), desc=desc, unit="clip", disable=None)
        return list(results)


def split_groups(
    index: DatasetIndex, seed: int = 0, validation: float = 0.15, test: float = 0.2
) -> dict[str, list[str]]:
    """Seeded, stratified, group-aware split: within each class, whole groups go to train/validation/test.

    Fractions are of each class's groups (rounded, at least one group each where the class has three or more),
    so every class appears on every side and no group is on two sides. Returns sorted group keys per split.
    """
    rng = random.Random(seed)
    by_class: dict[str, list[str]] = defaultdict(list)
    for g in sorted(index.groups()):
        by_class[g.split("/")[0]].append(g)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for label in sorted(by_class):
        groups = by_class[label]
        rng.shuffle(groups)
        n = len(groups)
        n_test = max(1, round(test * n)) if n >= 3 else 0
        n_val = max(1, round(validation * n)) if n >= 3 else 0
        out["test"] += groups[:n_test]
        out["validation"] += groups[n_test : n_test + n_val]
        out["train"] += groups[n_test + n_val :]
    return {s: sorted(v) for s, v in out.items()}


def clips_of(index: DatasetIndex, groups: Sequence[str]) -> list[Clip]:
    keep = set(groups)
    return [c for c in index.clips if c.group in keep]


# ---------------------------------------------------------------------------------------------------------------
# Frame cache: sampling a clip is the slow part of every epoch's input, so it is done once per (file, sampling).


def default_cache_dir() -> Path:
    return settings().cache_dir  # HAR_CACHE_DIR


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(path: Path, sampling: Sampling) -> str:
    """Content of the file + everything that changes the sampled frames (v2: to_model_frame halves large frames)."""
    return f"{file_digest(path)}-f{sampling.frames}-s{sampling.size}-v2"


def cached_frames(path: Path, sampling: Sampling, cache_dir: Path) -> np.ndarray:
    """``sample_clip`` through an on-disk cache: uint8 ``(frames, size, size, 3)``."""
    target = cache_dir / f"{cache_key(path, sampling)}.npy"
    if target.is_file():
        try:
            arr = np.load(target)
            if arr.shape == (sampling.frames, sampling.size, sampling.size, 3):
                return arr
        except (OSError, ValueError):
            pass  # a torn write from a killed run: sample again
    arr = sample_clip(path, sampling.frames, sampling.size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, target)  # atomic: a reader sees the whole file or none
    return arr


def load_frames(
    clips: Sequence[Clip], sampling: Sampling, cache_dir: Path | None = None, workers: int | None = None,
    desc: str | None = "frames",
) -> np.ndarray:
    """Sampled frames of every clip, uint8 ``(clips, frames, size, size, 3)``, decoding only what is not cached."""
    cache = cache_dir or default_cache_dir()
    arrays = _map(lambda c: cached_frames(c.path, sampling, cache), list(clips), workers, desc)
    return np.stack(arrays) if arrays else np.zeros((0, sampling.frames, sampling.size, sampling.size, 3), np.uint8)


def clip_durations(clips: Sequence[Clip]) -> list[float]:
    """Container durations in seconds (for the timeline window: the median training clip length)."""
    return [d for d in (_duration(c.path) for c in clips) if d > 0]


def _duration(path: Path) -> float:
    try:
        return probe(path).duration_s
    except HarError:
        return 0.0


def class_counts(index: DatasetIndex, clips: Sequence[Clip]) -> dict[str, int]:
    n = Counter(c.label for c in clips)
    return {c: n.get(c, 0) for c in index.classes}


def make_dataset(frames: np.ndarray, labels: np.ndarray, batch_size: int, *, map_fn=None,
                 shuffle_seed: int | None = None, drop_remainder: bool = False):
    """A ``tf.data.Dataset`` of ``((batch, F, H, W, 3) uint8, (batch,) int32)`` from in-memory cached frames.

    Evaluation (``shuffle_seed=None``): ``map_fn(clip)`` per clip, in order. Training: shuffled every epoch, and
    ``map_fn(clip, seed)`` gets a shape-(2,) int64 seed drawn from ``shuffle_seed`` per element, so stateless
    augmentation is reproducible even with parallel map calls. ``drop_remainder``: no last, smaller batch (the
    clips of an epoch's shuffled order that do not fill one wait for another epoch).
    """
    import tensorflow as tf

    assert len(frames) == len(labels), (frames.shape, labels.shape)
    ds = tf.data.Dataset.from_tensor_slices((frames, labels.astype(np.int32)))
    if shuffle_seed is None:
        if map_fn is not None:
            ds = ds.map(lambda x, y: (map_fn(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.shuffle(len(frames), seed=shuffle_seed, reshuffle_each_iteration=True)
        if map_fn is not None:
            seeds = tf.data.Dataset.random(seed=shuffle_seed).batch(2)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda xy, s: (map_fn(xy[0], s), xy[1]), num_parallel_calls=tf.data.AUTOTUNE
            )
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

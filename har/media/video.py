"""Decode videos and sample them into the model's input, fast and exactly.

Two forms:

* :func:`sample_clip` takes ``frames`` frames at equal intervals over the **whole** clip, in one sequential
  decoding pass (every frame is grabbed, only the chosen ones are retrieved and converted), and returns uint8
  ``(frames, size, size, 3)`` RGB. Scaling to [0, 1] happens inside the model.
* :func:`iter_frames` streams ``(index, seconds, frame)`` over a long video at reduced size, holding one full-size
  frame at a time.

Frame ``i`` of ``n`` chosen from a clip of ``total`` frames is ``floor((i + 0.5) * total / n)``: the centre of
the i-th of ``n`` equal segments. A clip with fewer than ``n`` frames therefore repeats frames evenly
(each frame ``n / total`` times, in order) instead of being dropped: that is our padding rule.

We never seek (``CAP_PROP_POS_FRAMES``) per frame: it is slow and lands on the wrong frame in many files. The
container's frame count (``CAP_PROP_FRAME_COUNT``) is only a guess used to plan which frames to retrieve during
the pass; the pass counts the frames that really decode, and when the guess was wrong a second pass retrieves
the right ones, so the result is exact either way.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# FFmpeg's own messages ("moov atom not found", ...) would reach the user's terminal; our errors say it better.
# Set before OpenCV's FFmpeg backend starts; export OPENCV_FFMPEG_LOGLEVEL=24 to see them when debugging.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from har.errors import VideoError

log = logging.getLogger(__name__)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV's own warnings likewise

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (frame count and duration are estimates: containers lie)."""

    width: int
    height: int
    fps: float  # average frame rate reported by the container; 0 when unknown
    frame_count: int  # reported frame count; may be wrong or 0
    duration_s: float  # frame_count / fps when both are known, else 0


def sample_indices(total: int, n: int) -> np.ndarray:
    """Indices of ``n`` frames at equal intervals over ``total`` frames: segment centres, repeating when short.

    >>> sample_indices(100, 4).tolist()
    [12, 37, 62, 87]
    >>> sample_indices(3, 6).tolist()
    [0, 0, 1, 1, 2, 2]
    """
    assert total > 0 and n > 0, (total, n)
    return ((np.arange(n) + 0.5) * total / n).astype(np.int64)


def _describe(path: Path) -> str:
    return f"'{path.name}'"


def open_video(path: str | os.PathLike) -> cv2.VideoCapture:
    """Open ``path`` with OpenCV's FFmpeg backend, or raise :class:`VideoError` saying why it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise VideoError(f"Video file {_describe(p)} does not exist.")
    if p.is_dir():
        raise VideoError(f"{_describe(p)} is a folder, not a video file.")
    size = p.stat().st_size
    if size == 0:
        raise VideoError(f"Video file {_describe(p)} is empty (0 bytes); the upload may have failed.")
    with open(p, "rb") as f:
        what = _not_a_video(f.read(16))
    if what:
        raise VideoError(f"{_describe(p)} is {what}, not a video.")
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(_why_not_a_video(p))
    return cap


# FFmpeg would happily decode a still image as a one-frame "video": refuse those by their first bytes.
# (Animated GIFs are left to FFmpeg: they are moving pictures.)
_NOT_VIDEO_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"BM": "a BMP image",
                    b"RIFF": None, b"%PDF": "a PDF document", b"PK\x03\x04": "a ZIP archive",
                    b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image", b"\xff\x0a": "a JPEG XL image",
                    b"\x00\x00\x00\x0cjP  ": "a JPEG 2000 image", b"\x00\x00\x00\x0cJXL ": "a JPEG XL image",
                    b"\x00\x00\x01\x00": "an icon image", b"8BPS": "a Photoshop image", b"qoif": "a QOI image"}
# Still images in an ISO container (the "ftyp" box of MP4): its major brand says which.
_IMAGE_BRANDS = {b"heic": "a HEIC image", b"heix": "a HEIC image", b"mif1": "a HEIF image", b"avif": "an AVIF image"}


def _kind_of(head: bytes) -> str | None:
    """The video container family named by a file's first bytes, or None."""
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "MP4/MOV"
    if head[:4] == b"RIFF" and head[8:11] == b"AVI":
        return "AVI"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:3] == b"FLV":
        return "FLV"
    if head[:4] == b"\x00\x00\x01\xba" or head[:1] == b"\x47":
        return "MPEG"
    return None


def _not_a_video(head: bytes) -> str | None:
    """What a file is when its first bytes say it is surely not a video (an image, a document, ...)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        return _IMAGE_BRANDS[head[8:12]]
    for magic, what in _NOT_VIDEO_MAGIC.items():
        if what and head.startswith(magic):
            return what
    return None


def _why_not_a_video(p: Path) -> str:
    """The most specific reason we can give for a file OpenCV's FFmpeg cannot open."""
    with open(p, "rb") as f:
        head = f.read(4096)
    kind = _kind_of(head)
    if kind and _track_kinds(p, kind) == {"audio"}:
        return f"{_describe(p)} has no video stream: it holds only audio. Upload a video file."
    if kind:
        return (f"{_describe(p)} looks like an {kind} file but cannot be decoded: it is probably truncated "
                "(an incomplete upload or download) or damaged.")
    what = _not_a_video(head)
    if what:
        return f"{_describe(p)} is {what}, not a video."
    try:
        head.decode("utf-8")
        is_text = b"\x00" not in head
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        return f"{_describe(p)} is a text file, not a video."
    return (f"{_describe(p)} is not a video that can be decoded (unknown format or not a video file at all). "
            "Try an MP4, AVI, MOV, MKV or WebM video.")


_SCAN_BYTES = 4 << 20  # the track list sits in a container's first or last few megabytes


def _track_kinds(p: Path, kind: str) -> set[str]:
    """Kinds of tracks (``"video"``, ``"audio"``) a container declares, read from its bytes; empty when unknown.

    MP4/MOV: the handler type of each track (``hdlr`` box: ``vide``, ``soun``), in the index at the start or the
    end of the file; Matroska/WebM: the codec ids (``V_VP9``, ``A_OPUS``) in the header.
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        data = f.read(_SCAN_BYTES)
        if size > _SCAN_BYTES:
            f.seek(max(_SCAN_BYTES, size - _SCAN_BYTES))
            data += f.read()
    if kind == "MP4/MOV":  # hdlr: size, "hdlr", version and flags (4 bytes), pre_defined (4), handler type (4)
        handlers = {data[m.start() + 12 : m.start() + 16] for m in re.finditer(b"hdlr", data)}
        return {name for code, name in ((b"vide", "video"), (b"soun", "audio")) if code in handlers}
    if kind == "Matroska/WebM":  # CodecID element (0x86), a one-byte size, then "V_..." or "A_..."
        ids = set(re.findall(rb"\x86[\x81-\xbf]([VA])_", data))
        return {name for code, name in ((b"V", "video"), (b"A", "audio")) if code in ids}
    return set()


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the container's own description of a video without decoding it."""
    cap = open_video(path)
    try:
        return _info(cap)
    finally:
        cap.release()


def _info(cap: cv2.VideoCapture) -> VideoInfo:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not np.isfinite(fps) or fps < 0 or fps > 1000:
        fps = 0.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    count = max(count, 0)
    return VideoInfo(
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        fps=fps,
        frame_count=count,
        duration_s=count / fps if fps > 0 else 0.0,
    )


def to_model_frame(bgr: np.ndarray, size: int) -> np.ndarray:
    """Full-size BGR frame -> ``(size, size, 3)`` uint8 RGB, area interpolation (resize first: cheaper).

    A frame whose short side is at least ``8 * size`` (720p and up for 64) is first halved, exactly (2x2
    averages), as often as that holds: area interpolation straight from 1280x720 to 64x64 costs 2.6 ms, halving
    first 0.8 ms, and the result differs by at most 2 of 255 levels. Smaller frames (all of UCF101's 320x240)
    take the single resize."""
    if bgr.ndim == 2:  # some backends hand back single-channel frames for grayscale video
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    while min(bgr.shape[:2]) >= 8 * size:
        h, w = bgr.shape[:2]
        bgr = cv2.resize(bgr, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    small = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def no_frame_error(path: Path) -> VideoError:
    """The error for a file that opens but yields no video frame (audio-only, truncated, corrupt)."""
    return VideoError(
        f"{_describe(path)} has no decodable video frame: it may be audio-only, truncated before the first "
        "frame, or corrupt."
    )


def _pass(path: Path, wanted: np.ndarray | None, size: int) -> tuple[int, dict[int, np.ndarray]]:
    """One sequential pass: grab every frame, retrieve those in ``wanted`` (all when None).

    Returns the number of frames that really decode and the retrieved ``(size, size, 3)`` frames by index.
    """
    cap = open_video(path)
    keep = None if wanted is None else set(wanted.tolist())
    got: dict[int, np.ndarray] = {}
    n = 0
    try:
        while cap.grab():
            if keep is None or n in keep:
                ok, img = cap.retrieve()
                if ok and img is not None and img.size:
                    got[n] = to_model_frame(img, size)
            n += 1
    finally:
        cap.release()
    return n, got


def gather(indices: np.ndarray, got: dict[int, np.ndarray]) -> np.ndarray:
    """Stack ``got[i]`` for each index: ``(n, size, size, 3)``; an index whose retrieve failed takes the nearest
    retrieved frame."""
    have = None
    out = []
    for i in indices.tolist():
        if i not in got:
            have = np.array(sorted(got)) if have is None else have
            i = int(have[np.argmin(np.abs(have - i))])
        out.append(got[i])
    return np.stack(out)


def sample_clip(path: str | os.PathLike, frames: int = 20, size: int = 64) -> np.ndarray:
    """``frames`` RGB frames at equal intervals over the whole video at ``path``: uint8 ``(frames, size, size, 3)``.

    Raises :class:`VideoError` for a missing or empty file, a file that is not a video, or a video without any
    decodable frame. A clip shorter than ``frames`` repeats its frames evenly (see the module docstring).
    """
    return sample_clip_counted(path, frames, size)[0]


def sample_clip_counted(path: str | os.PathLike, frames: int = 20, size: int = 64) -> tuple[np.ndarray, int]:
    """:func:`sample_clip` and the number of frames that really decode (a truncated file decodes fewer than its
    container says: the clip is then sampled from the part that does)."""
    p = Path(path)
    cap = open_video(p)
    guess = _info(cap).frame_count
    cap.release()
    # Plan from the container's guess; with no guess, keep every (small) frame of this one pass.
    wanted = sample_indices(guess, frames) if guess > 0 else None
    total, got = _pass(p, wanted, size)
    if total == 0 or not got:
        raise no_frame_error(p)
    indices = sample_indices(total, frames)
    if wanted is not None and total != guess:
        # The container lied about its length: the frames we retrieved were planned on the wrong count.
        log.debug("%s: container says %d frames, %d decode; second pass", p.name, guess, total)
        total2, got = _pass(p, indices, size)
        if total2 != total:  # a decoder that is not deterministic: keep every frame of one more pass
            total2, got = _pass(p, None, size)
            indices = sample_indices(max(total2, 1), frames)
        if total2 == 0 or not got:
            raise no_frame_error(p)
        total = total2
    return gather(indices, got), total


def sample_span(path: str | os.PathLike, frames: int, size: int, start_s: float,
                end_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` frames at equal intervals over the span ``start_s`` .. ``end_s`` seconds (default: the end),
    as a timeline window samples it: ``(clip (frames, size, size, 3) uint8, times (frames,) seconds)``. Raises
    :class:`VideoError` as :func:`sample_clip` does, and for a span outside the video."""
    p = Path(path)
    cap = open_video(p)
    info = _info(cap)
    cap.release()
    fps = info.fps or 25.0
    end = info.duration_s if end_s is None else float(end_s)
    if not (0 <= start_s < end) or (info.duration_s and start_s >= info.duration_s):
        raise VideoError(f"The span {start_s:g}-{end:g} s is not inside {_describe(p)} "
                         f"({info.duration_s:.1f} s long).")
    step = (end - start_s) / frames
    times = start_s + (np.arange(frames) + 0.5) * step
    wanted = np.floor(times * fps).astype(np.int64)
    total, got = _pass(p, wanted, size)
    if total == 0 or not got:
        raise no_frame_error(p)
    return gather(np.minimum(wanted, total - 1), got), times


@dataclass(frozen=True)
class Frame:
    """One decoded frame of a stream."""

    index: int  # 0-based position in decoding order
    t: float  # presentation time in seconds
    image: np.ndarray  # uint8 RGB (size, size, 3), or BGR at source size when size is None


def iter_frames(path: str | os.PathLike, size: int | None = 64, every_s: float | None = None) -> Iterator[Frame]:
    """Stream a video's frames in decoding order, one full-size frame in memory at a time.

    ``size``: resize to ``(size, size)`` RGB as the model sees it; ``None`` keeps the source BGR frame.
    ``every_s``: only retrieve (and yield) the first frame at or after each multiple of this many seconds;
    the others are grabbed and skipped, which is much cheaper than converting them.
    Timestamps are the container's presentation times when they increase, else ``index / fps``.
    Raises :class:`VideoError` when the file cannot be opened or has no decodable frame.
    """
    p = Path(path)
    cap = open_video(p)
    fps = _info(cap).fps or 25.0
    n = 0
    last_t = -1.0
    next_t = 0.0
    try:
        while cap.grab():
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not np.isfinite(t) or t <= last_t:
                t = last_t + 1.0 / fps if n else 0.0
            last_t = t
            if every_s is None or t + 1e-6 >= next_t:
                ok, img = cap.retrieve()
                if ok and img is not None and img.size:
                    if every_s is not None:
                        while next_t <= t + 1e-6:
                            next_t += every_s
                    yield Frame(n, t, img if size is None else to_model_frame(img, size))
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise no_frame_error(p)


def count_frames(path: str | os.PathLike) -> tuple[int, float]:
    """Decode the whole video once (grab only) and return ``(frames, duration_s)`` as they really are."""
    p = Path(path)
    cap = open_video(p)
    fps = _info(cap).fps or 25.0
    n = 0
    t_last = 0.0
    try:
        while cap.grab():
            t_last = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise no_frame_error(p)
    duration = max(n / fps, t_last + 1.0 / fps if np.isfinite(t_last) else 0.0)
    return n, duration

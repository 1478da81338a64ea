"""The timeline: what a model sees over a long video, from one sequential decoding pass.

A window of ``window_s`` seconds slides by ``hop_s`` over the video. Each window is sampled like a training clip:
``frames`` frames at equal intervals ``window_s / frames`` apart. The sample times of every window lie on one grid
of that step (:func:`plan_windows`), so overlapping windows share frames: a pass retrieves ``frames / window_s``
frames per second (10 of 25-30 at 20 frames in 2 s) and only grabs the others, decoding the video once and keeping
model-sized frames only. One thread decodes, one resizes, one runs the model on batches of windows or, for a
recognizer served in two halves (``per_frame``), of grid frames (each frame's features once; the head per window).
Window probabilities become probabilities per step of time (the hop, at most a second) and segments by the Viterbi
decoder of :mod:`har.serve.segments` (K classes and "none of the known actions", a cost per change of state).

The defaults (:func:`settings`): a model trained on temporal crops (config ``min_window_s`` > 0) gets
:data:`WINDOW_S` every :data:`HOP_S`; a model trained on whole clips keeps its config's window (the median training
clip) and hop. Every timeline decodes with :data:`SWITCH_PENALTY` unless told otherwise.

Frame ``j`` of a video is taken to show time ``j / fps`` (constant frame rate), as :mod:`har.media.video` does. The
recognizers are used through ``config``, ``name``, ``uncertain_below``, ``batch_size``, ``ready``, ``per_frame``,
``probabilities``, ``frame_features``, ``head_outputs`` and ``prediction`` (:class:`har.Recognizer`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from har.errors import HarError
from har.media.limits import check_length, max_frames
from har.media.video import count_frames, gather, no_frame_error, open_video, probe, sample_indices, to_model_frame
from har.openset.score import pooled
from har.progress import Progress
from har.serve.results import Timeline, check_top_k
from har.serve.segments import decode, per_second, per_step, unknown_of

log = logging.getLogger(__name__)

# The timeline's defaults (issue 18), in one place; chosen on the validation groups' montages
# (benchmarks/bench_timeline.py --grid), never on the test groups'.
WINDOW_S = 2.0  # window of a model trained on temporal crops (never shorter than its config's min_window_s)
HOP_S = 0.5  # their hop; the decoder's step is the hop, at most MAX_STEP_S
MAX_STEP_S = 1.0
SWITCH_PENALTY = 2.0  # log-space cost of a change of state (har.serve.segments.decode; with its FLOOR, the trust in u)
AHEAD = 8  # retrieved full-size frames waiting to be resized, at most


@dataclass(frozen=True)
class WindowPlan:
    """Frames a recognizer needs from a video of ``total`` frames: its windows and the whole-clip sample."""

    starts_s: np.ndarray  # (K,) window start, seconds
    length_s: float  # every window's length (the video's when it is shorter than a window)
    indices: np.ndarray  # (K, frames) frame indices, ascending in each row and by first index
    clip: np.ndarray  # (frames,) the whole video sampled as in training
    hop_s: float  # the hop asked for (windows start within half a grid step of k * hop_s)


def plan_windows(total: int, fps: float, frames: int, window_s: float, hop_s: float) -> WindowPlan:
    """Windows of ``frames`` samples ``step = window_s / frames`` seconds apart, every ``hop_s`` seconds.

    Sample ``j`` of the video's grid is at ``(j + 0.5) * step`` seconds (the centre of the j-th step, as in
    :func:`har.media.video.sample_indices`), i.e. frame ``floor((j + 0.5) * step * fps)``. Window ``k`` takes grid
    samples ``g_k .. g_k + frames - 1`` with ``g_k = round(k * hop_s / step)``: it spans exactly ``window_s``
    seconds and starts within half a step of ``k * hop_s``. A last window is aligned to the video's end. A video
    shorter than a window is one window: the whole clip, as in training.
    """
    assert total > 0 and fps > 0 and frames > 0 and window_s > 0 and hop_s > 0, (total, fps, frames, window_s, hop_s)
    clip = sample_indices(total, frames)
    duration = total / fps
    step = window_s / frames
    grid = int(math.floor(duration / step + 1e-9))  # grid samples whose whole step lies inside the video
    if grid <= frames:
        return WindowPlan(np.zeros(1), duration, clip[None, :], clip, hop_s)
    last = grid - frames
    firsts = sorted({min(int(round(k * hop_s / step)), last) for k in range(int(last * step / hop_s) + 2)})
    firsts = np.array(firsts, dtype=np.int64)
    g = firsts[:, None] + np.arange(frames)[None, :]  # (K, frames) grid sample numbers
    indices = np.minimum(np.floor((g + 0.5) * step * fps).astype(np.int64), total - 1)
    return WindowPlan(firsts * step, window_s, indices, clip, hop_s)


def settings(config, window_s: float | None = None, hop_s: float | None = None) -> tuple[float, float]:
    """``(window_s, hop_s)`` of a timeline: those given, else the model's defaults (the module's doc)."""
    if config.min_window_s > 0:
        default = max(WINDOW_S, config.min_window_s), HOP_S
    else:
        default = config.whole_clip_window_s, config.whole_clip_hop_s
    return window_s or default[0], hop_s or default[1]


# --------------------------------------------------------------------------------------------------------------
# One decoding pass for any number of recognizers


def scan(path: Path, recognizers: Sequence, window_s: float | None, hop_s: float | None, top_k: int,
         progress: Progress, penalty: float | None = None, overlap: bool = True) -> list[Timeline]:
    """Timelines (with whole-clip predictions) of every recognizer from one sequential decoding pass (two when
    the container's frame count is wrong: the windows are planned again on the count that really decodes).
    ``penalty``: the decoder's cost per change of state (default :data:`SWITCH_PENALTY`). ``overlap``: resize
    frames beside decoding (:func:`_decode`; False: one after the other, the same numbers)."""
    check_top_k(top_k)
    window_s, hop_s = _seconds("window", window_s), _seconds("hop", hop_s)
    penalty = _penalty(penalty)
    info = probe(path)
    check_length(path, info.duration_s)
    fps = info.fps or 25.0
    total = info.frame_count
    if total <= 0:  # the container does not say: count first (grab only), then plan
        progress(0.0, "counting frames")
        total, _ = count_frames(path)
        check_length(path, total / fps)
    names = ", ".join(r.name for r in recognizers)
    with ThreadPoolExecutor(1, thread_name_prefix="har-forward") as pool:
        jobs = _jobs(recognizers, total, fps, window_s, hop_s, pool)
        found = _decode(path, jobs, total, fps, names, progress, overlap)
        if found != total:  # the container lied about its length, as sample_clip also finds
            log.debug("%s: container says %d frames, %d decode; second pass", path.name, total, found)
            for job in jobs:
                job.cancel()
            jobs = _jobs(recognizers, found, fps, window_s, hop_s, pool)
            found = _decode(path, jobs, found, fps, names, progress, overlap)
        clips = [pool.submit(job.rec.answer, gather(job.plan.clip, job.clip)[None]) for job in jobs]
        progress(0.95, f"{names}: scoring windows")
        timelines = [_timeline(job, clip.result(), found, fps, penalty, top_k)
                     for job, clip in zip(jobs, clips, strict=True)]
    progress(1.0, f"{names}: timeline ready")
    # each result says how much of the container's length it was made from (found / fps of info.duration_s)
    return [replace(t, clip=t.clip.read(t.duration_s, info.duration_s)) for t in timelines]


def _jobs(recognizers: Sequence, total: int, fps: float, window_s: float | None, hop_s: float | None,
          pool: ThreadPoolExecutor) -> list[_Job]:
    """Each recognizer's windows planned on ``total`` frames: a job that takes the frames they need."""
    jobs: list[_Job] = []
    for rec in recognizers:
        plan = plan_windows(total, fps, rec.config.frames, *settings(rec.config, window_s, hop_s))
        # A model still loading in the background (the CLI's) gets its frames once it is ready: no waiting here
        jobs.append(_job_for(rec, plan, pool) if rec.ready else _PendingJob(rec, plan, pool))
    return jobs


def _job_for(rec, plan: WindowPlan, pool: ThreadPoolExecutor) -> _Job:
    """The job a loaded recognizer calls for: frames once each when it is served in halves, else whole windows."""
    return (_FrameJob if rec.per_frame else _WindowJob)(rec, plan, pool)


def _decode(path: Path, jobs: Sequence[_Job], total: int, fps: float, names: str, progress: Progress,
            overlap: bool = True) -> int:
    """Grab every frame once, retrieve only those some job needs, hand them over; return how many frames really
    decode. Raises :class:`VideoError` for a video without a decodable frame or longer than the limit. This thread
    grabs and retrieves; another resizes each retrieved frame (to every size wanted) and hands it to the jobs in
    decoding order, :data:`AHEAD` full-size frames at most waiting (a 720p frame is 2.7 MB); ``overlap`` False
    resizes here."""
    limit = max_frames(fps)
    sizes_at: dict[int, set[int]] = {}  # frame index -> sizes some job wants it at
    for job in jobs:
        for i in job.needed:
            sizes_at.setdefault(i, set()).add(job.rec.config.size)

    def hand_over(n: int, img: np.ndarray) -> None:
        small = {s: to_model_frame(img, s) for s in sizes_at[n]}
        for job in jobs:
            job.take(n, small[job.rec.config.size])
            job.advance(n)

    progress(0.0, f"{names}: decoding {total} frames")
    cap = open_video(path)
    n = retrieved = 0
    last_report = time.monotonic()
    waiting: deque[Future] = deque()  # hand-overs queued on the resizing thread, oldest first
    with ThreadPoolExecutor(1, thread_name_prefix="har-resize") as resizer:
        try:
            while cap.grab():
                if n in sizes_at:
                    ok, img = cap.retrieve()
                    if ok and img is not None and img.size:
                        retrieved += 1
                        if overlap:
                            waiting.append(resizer.submit(hand_over, n, img))
                            while len(waiting) > AHEAD or (waiting and waiting[0].done()):
                                waiting.popleft().result()  # raises what the hand-over raised
                        else:
                            hand_over(n, img)
                n += 1
                if n % 64 == 0:
                    if n > limit:
                        check_length(path, n / fps)
                    if time.monotonic() - last_report > 0.25:
                        progress(0.95 * min(n / total, 1.0), f"{names}: decoded {n} of {total} frames")
                        last_report = time.monotonic()
            while waiting:
                waiting.popleft().result()
        finally:
            cap.release()
            for f in waiting:
                f.cancel()
    if n == 0 or retrieved == 0:
        raise no_frame_error(path)
    return n


def _timeline(job: _Job, clip: tuple, frames: int, fps: float, penalty: float, top_k: int) -> Timeline:
    """One recognizer's timeline from its job after the pass and its whole-clip answer (probabilities and
    familiarity, :meth:`har.Recognizer.answer`). With an open-set score, a step's unknown probability is the larger
    of the top-probability rule's and the familiarity's (:meth:`har.openset.score.Familiarity.unknown_probability`,
    averaged over the windows covering the step as the probabilities are)."""
    rec, plan = job.rec, job.plan
    wp = job.window_probs()
    duration = frames / fps
    t, probs = per_second(plan.starts_s, plan.length_s, wp, duration)
    step = min(plan.hop_s, MAX_STEP_S)
    steps, step_probs = per_step(plan.starts_s, plan.length_s, wp, duration, step)
    unknown = unknown_of(step_probs, rec.uncertain_below)
    descriptors = job.window_descriptors() if rec.familiarity is not None else None
    familiarity = None
    if descriptors is not None:
        familiarity = rec.familiarity.of_descriptors(descriptors, job.window_logits)
        u = rec.familiarity.unknown_probability(familiarity, window=True)[:, None]
        unknown = np.maximum(unknown, per_step(plan.starts_s, plan.length_s, u, duration, step)[1][:, 0])
    segs = decode(step_probs, step, duration, rec.config.classes, rec.uncertain_below, penalty, unknown)
    probs_clip, fam_clip = clip
    return Timeline(rec.name, rec.prediction(probs_clip[0], top_k, None if fam_clip is None else fam_clip[0]),
                    duration, fps, frames, plan.length_s, plan.hop_s, plan.starts_s, wp, t, probs, step, steps,
                    step_probs, unknown.astype(np.float32), penalty, segs, familiarity)


class _Job:
    """What one recognizer needs from a pass: its windows' frames and its whole-clip sample (kept to the end)."""

    def __init__(self, rec, plan: WindowPlan, pool: ThreadPoolExecutor):
        self.rec, self.plan, self.pool = rec, plan, pool
        self.wanted = set(np.unique(plan.indices).tolist())
        self.clip_wanted = set(plan.clip.tolist())
        self.needed = self.wanted | self.clip_wanted
        self.clip: dict[int, np.ndarray] = {}  # index -> (size, size, 3) of the whole-clip sample
        self.futures: list[Future] = []

    def take(self, index: int, frame: np.ndarray) -> None:
        if index in self.wanted:
            self.add(index, frame)
        if index in self.clip_wanted:
            self.clip[index] = frame

    def add(self, index: int, frame: np.ndarray) -> None:
        raise NotImplementedError

    def advance(self, done: int) -> None:
        """Every frame up to ``done`` has been decoded."""

    def cancel(self) -> None:
        for f in self.futures:
            f.cancel()

    def window_probs(self) -> np.ndarray:
        """``(windows, classes)`` after the pass."""
        raise NotImplementedError

    def window_descriptors(self) -> np.ndarray | None:
        """``(windows, C)`` open-set descriptors (:func:`har.openset.score.describe`) after :meth:`window_probs`; None
        for a model run whole per window."""
        return None

    window_logits: np.ndarray | None = None  # (windows, classes) after window_probs(), when the head gives them


class _WindowJob(_Job):
    """One recognizer's windows during a pass, for a model run whole: each window's frames are gathered as they
    decode and complete windows go to the model in batches on the worker thread."""

    def __init__(self, rec, plan: WindowPlan, pool: ThreadPoolExecutor):
        super().__init__(rec, plan, pool)
        self.frames: dict[int, np.ndarray] = {}  # index -> (size, size, 3), only until no unsent window needs it
        self.next = 0  # first window not yet sent
        self.pending: list[np.ndarray] = []  # complete windows waiting for a full batch

    def add(self, index: int, frame: np.ndarray) -> None:
        self.frames[index] = frame

    def advance(self, done: int, final: bool = False) -> None:
        """Send every window whose frames are all decoded (all frames ``<= done``; every window when final)."""
        idx = self.plan.indices
        sent = self.next
        while self.next < len(idx) and (final or idx[self.next, -1] <= done):
            self.pending.append(gather(idx[self.next], self.frames))
            self.next += 1
            if len(self.pending) == self.rec.batch_size:
                self._flush()
        if final:
            self._flush()
        if sent < self.next < len(idx):  # forget frames no unsent window needs (keep the newest for a recount)
            keep_from, newest = int(idx[self.next, 0]), max(self.frames, default=-1)
            for i in [i for i in self.frames if i < keep_from and i != newest]:
                del self.frames[i]

    def _flush(self) -> None:
        if self.pending:
            self.futures.append(self.pool.submit(self.rec.probabilities, np.stack(self.pending)))
            self.pending = []

    def window_probs(self) -> np.ndarray:
        self.advance(-1, final=True)
        return np.concatenate([f.result() for f in self.futures])


class _FrameJob(_Job):
    """One recognizer's windows during a pass, for a model split in halves: per-frame features (vectors or maps) of
    each grid frame once (in batches, on the worker thread), then the head over every window's features at the
    end."""

    def __init__(self, rec, plan: WindowPlan, pool: ThreadPoolExecutor):
        super().__init__(rec, plan, pool)
        self.batch: list[np.ndarray] = []
        self.indices: list[int] = []  # frames retrieved, in decoding order

    def add(self, index: int, frame: np.ndarray) -> None:
        self.batch.append(frame)
        self.indices.append(index)
        if len(self.batch) == self.rec.batch_size:  # frames per encoder call (activation memory)
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            self.futures.append(self.pool.submit(self.rec.frame_features, np.stack(self.batch)))
            self.batch = []

    def window_descriptors(self) -> np.ndarray | None:
        return self.descriptors

    def window_probs(self) -> np.ndarray:
        self._flush()
        features = np.concatenate([f.result() for f in self.futures])  # (retrieved, *feature_shape)
        have = np.asarray(self.indices)
        # each window frame's row; a frame that failed to decode takes the nearest decoded one
        pos = np.clip(np.searchsorted(have, self.plan.indices), 0, len(have) - 1)
        left = np.clip(pos - 1, 0, len(have) - 1)
        rows = np.where(np.abs(have[left] - self.plan.indices) < np.abs(have[pos] - self.plan.indices), left, pos)
        # each window's open-set descriptor: the mean of its frames' features averaged over space
        per_frame = pooled(features[None])[0]  # (retrieved, C): pooled before gathering, the maps stay unrepeated
        self.descriptors = per_frame[rows].mean(axis=1)
        # (windows, frames, *feature_shape) -> (windows, classes), a batch of windows at a time: the ConvLSTM's maps
        # (20 KB a frame at 128 px) of every window of a long video at once would take (windows x frames) times that
        step = self.rec.batch_size
        out = [self.rec.head_outputs(features[rows[i : i + step]]) for i in range(0, len(rows), step)]
        if out and out[0][1] is not None:
            self.window_logits = np.concatenate([lg for _, lg in out])
        return np.concatenate([p for p, _ in out])


class _PendingJob(_Job):
    """A recognizer still loading when the pass starts: the frames it needs are kept (model-sized, as many as decode
    while it loads) until it is ready, then handed in order to the job it calls for (:func:`_job_for`), which takes
    every later frame. A model served in halves thus shares its frames' features however long its load took."""

    def __init__(self, rec, plan: WindowPlan, pool: ThreadPoolExecutor):
        super().__init__(rec, plan, pool)
        self.kept: list[tuple[int, np.ndarray]] = []  # (index, (size, size, 3)) taken before the model was ready
        self.job: _Job | None = None

    def _start(self, wait: bool = False) -> _Job | None:
        """The job, made (and given the frames kept) once the recognizer is ready, or at once with ``wait``."""
        if self.job is None and (wait or self.rec.ready):
            job = _job_for(self.rec, self.plan, self.pool)  # raises the load's error, if it failed
            for index, frame in self.kept:
                job.add(index, frame)
                job.advance(index)
            self.job, self.kept, self.futures = job, [], job.futures  # cancel() reaches the job's
        return self.job

    def add(self, index: int, frame: np.ndarray) -> None:
        if self._start() is None:
            self.kept.append((index, frame))
        else:
            self.job.add(index, frame)

    def advance(self, done: int) -> None:
        if self.job is not None:
            self.job.advance(done)

    def window_probs(self) -> np.ndarray:
        probs = self._start(wait=True).window_probs()
        self.window_logits = self.job.window_logits
        return probs

    def window_descriptors(self) -> np.ndarray | None:
        return self.job.window_descriptors()


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    v = _finite(value)
    if not v > 0:
        raise HarError(f"The {name} length must be a positive number of seconds, not {value!r}.")
    return v


def _penalty(value: float | None) -> float:
    if value is None:
        return SWITCH_PENALTY
    v = _finite(value)
    if not v >= 0:
        raise HarError(f"The switching penalty must be a number of at least 0, not {value!r}.")
    return v


def _finite(value) -> float:
    """``value`` as a finite float; NaN (no comparison holds) when it is not one."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan

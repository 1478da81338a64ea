"""The annotated copy: the source video as H.264 MP4 with every model's current label drawn on every frame.

Captions change a few times a second at most, so each is drawn once (:class:`_Overlay`, OpenCV) as a transparent
image; one ffmpeg process decodes the source, lays the images over it at their times (an ffconcat list) and
encodes H.264 (yuv420p, +faststart: what every browser plays) with the source's audio. No raw frame crosses a pipe.
Frame ``j`` keeps time ``j / fps``: same frame count and rate as the source; the size is capped at 720p, and a
small source is scaled up to a 240-pixel short side. The caption's font, thickness and band follow the frame's size.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from har.errors import HarError
from har.media.ffmpeg import audio_codec, ffmpeg_exe
from har.media.limits import check_length, max_frames
from har.media.video import count_frames, no_frame_error, open_video, probe
from har.progress import Progress, silent
from har.serve.results import UNCERTAIN, ClipPrediction, Timeline

MAX_SIDE, MAX_SHORT_SIDE = 1280, 720  # annotated copies are capped at 720p (landscape or portrait)
# Smaller sources are scaled up to a 240-pixel short side: the browser shows them larger anyway, and a legible
# caption (two models: two lines of 12 px) then covers a tenth of the frame instead of a fifth.
MIN_SHORT_SIDE = 240


def output_size(width: int, height: int) -> tuple[int, int]:
    """The source's size capped at 720p (1280x720, or 720x1280 for portrait) and, for a small source, scaled up
    to a 240-pixel short side (within the cap); even on both sides."""
    short, long = min(width, height), max(width, height)
    scale = min(max(1.0, MIN_SHORT_SIDE / short), MAX_SIDE / long, MAX_SHORT_SIDE / short)
    w, h = int(width * scale), int(height * scale)
    return max(2, w - w % 2), max(2, h - h % 2)


def _encode_cmd(src: Path, captions: Path, tmp: Path, size: tuple[int, int], source_size: tuple[int, int],
                fps: float, frames: int, exact: bool, audio_codec: str | None = None) -> list[str]:
    """ffmpeg decodes ``src``, lays the caption images over it and encodes it as H.264 (yuv420p, +faststart)
    with the source's audio, cut to ``frames / fps`` seconds. With ``exact``, ``frames`` is known to decode and
    is also the count of frames written. Frame ``j`` keeps time ``j / fps``; none is dropped or repeated."""
    w, h = size
    sw, sh = source_size
    rate = Fraction(fps).limit_denominator(1001)  # 29.97002997 -> 30000/1001
    # an odd side loses one row/column (no resampling); a larger source is scaled down to 720p, a small one up
    fit = ("" if (sw, sh) == (w, h) else f",crop={w}:{h}:0:0" if (sw - w, sh - h) in ((0, 1), (1, 0), (1, 1))
           else f",scale={w}:{h}:flags={'area' if w < sw else 'bicubic'}")
    graph = (f"[0:v:0]setpts=N/({rate.numerator}/{rate.denominator})/TB{fit},format=yuv420p[v];"
             "[1:v]format=rgba[c];[v][c]overlay=0:0:eof_action=repeat:format=yuv420,format=yuv420p[out]")
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-nostats", "-y",
           "-i", str(src), "-f", "concat", "-safe", "0", "-i", str(captions)]
    audio = []
    if frames > 0:  # the audio at most as long as the video; keeps every frame (unlike -shortest)
        cmd += ["-t", f"{frames / fps:.3f}", "-i", str(src)]
        # AAC (what MP4 sources and YouTube downloads mostly hold) is copied as it is: every browser plays it,
        # and re-encoding it cost about a second of CPU per 30 s. Anything else becomes AAC.
        codec = ["copy"] if audio_codec == "aac" else ["aac", "-b:a", "128k"]
        audio = ["-map", "2:a:0?", "-c:a", *codec]
    # ultrafast: about 40% less CPU than superfast for about twice the bytes at the same quality setting.
    return cmd + ["-filter_complex", graph, "-map", "[out]", *audio,
                  *(["-frames:v", str(frames)] if exact else []), "-fps_mode", "passthrough", "-r", str(rate),
                  "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p",
                  "-movflags", "+faststart", "-progress", "pipe:1", "-f", "mp4", str(tmp)]


def _caption_runs(items: Sequence[tuple[str, Timeline | ClipPrediction]], frames: int,
                  fps: float) -> list[tuple[int, tuple[tuple[str, bool], ...]]]:
    """``[(first frame, caption lines)]``: where the captions change, frame ``j`` showing time ``j / fps``."""
    runs: list[tuple[int, tuple[tuple[str, bool], ...]]] = []
    for n in range(max(frames, 1)):
        text = tuple(_caption(name, r, n / fps) for name, r in items)
        if not runs or runs[-1][1] != text:
            runs.append((n, text))
    return runs


def annotate(path: str | os.PathLike, out_path: str | os.PathLike,
             results: Timeline | ClipPrediction | Mapping[str, Timeline | ClipPrediction]
             | Sequence[Timeline | ClipPrediction],
             progress: Progress | None = None) -> Path:
    """Copy the video at ``path`` to ``out_path`` (H.264 MP4) with each result's current label and probability
    drawn on every frame, one line per model; same frame count and rate as the source, audio kept, size capped at
    720p (a small source scaled up to a 240-pixel short side). A timeline shows the label of the segment at each
    frame's time; a clip prediction the same label throughout.

    The captions are drawn once per change (a few per second at most) as transparent images; ffmpeg decodes the
    source, lays them over it and encodes, in one process: no raw frame crosses a pipe. ``out_path`` appears
    only when complete (a temporary file beside it is renamed)."""
    progress = progress or silent
    if isinstance(results, (Timeline, ClipPrediction)):
        results = [results]
    items = list(results.items()) if isinstance(results, Mapping) else [(r.model, r) for r in results]
    src = Path(path)
    info = probe(src)
    check_length(src, info.duration_s)
    fps = info.fps or 25.0
    cap = open_video(src)  # the first frame: decodable at all, and its size as decoded (rotation applied)
    try:
        ok, first = cap.read()
    finally:
        cap.release()
    if not ok or first is None or not first.size:
        raise no_frame_error(src)
    sh, sw = first.shape[:2]
    size = output_size(sw, sh)
    # A timeline knows how many frames really decode (a container may say otherwise); copy exactly those.
    counted = [r.frame_count for _, r in items if isinstance(r, Timeline)]
    total = counted[0] if counted else info.frame_count if info.frame_count > 0 else count_frames(src)[0]
    runs = _caption_runs(items, total, fps)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.{threading.get_ident()}.tmp.mp4")
    limit = max_frames(fps)
    with tempfile.TemporaryDirectory(prefix="har-captions-") as workdir, tempfile.TemporaryFile() as err:
        _write_captions(Path(workdir), runs, size, fps)
        cmd = _encode_cmd(src, Path(workdir) / "captions.txt", tmp, size, (sw, sh), fps, total, bool(counted),
                          audio_codec(src))
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
        frame, last_report, too_long = 0, time.monotonic(), False
        try:
            for line in proc.stdout:  # -progress: key=value lines, a block about twice a second
                if line.startswith("frame="):
                    frame = int(line[6:].strip() or 0)
                    if frame > limit:
                        too_long = True
                        proc.kill()
                        break
                    if time.monotonic() - last_report > 0.25:
                        progress(min(frame / total, 1.0) if total > 0 else 0.5, f"annotating frame {frame}")
                        last_report = time.monotonic()
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            tmp.unlink(missing_ok=True)
            raise
        if too_long:
            tmp.unlink(missing_ok=True)
            check_length(src, frame / fps)
        if code != 0:
            tmp.unlink(missing_ok=True)
            err.seek(0)
            reason = err.read().decode(errors="replace").strip().splitlines()
            raise HarError(f"ffmpeg could not write {out.name}: {reason[-1] if reason else f'exit {code}'}")
    os.replace(tmp, out)
    progress(1.0, f"annotated copy written: {out.name}")
    return out


def _write_captions(workdir: Path, runs: Sequence[tuple[int, tuple[tuple[str, bool], ...]]],
                    size: tuple[int, int], fps: float) -> None:
    """One RGBA image per caption change, all of one size (the largest box), and an ffconcat list timing them."""
    overlays = [_Overlay(text, size) for _, text in runs]
    bw = max(o.box[0] for o in overlays)
    bh = max(o.box[1] for o in overlays)
    lines = ["ffconcat version 1.0"]
    for i, ((start, _), overlay) in enumerate(zip(runs, overlays, strict=True)):
        name = f"c{i:05d}.png"
        cv2.imwrite(str(workdir / name), overlay.rgba((bw, bh)))
        # from half a frame before its first frame, so rounding never shows the previous caption on it
        begin = max(start - 0.5, 0.0) / fps
        end = (runs[i + 1][0] - 0.5) / fps if i + 1 < len(runs) else None
        lines.append(f"file '{name}'")
        if end is not None:
            lines.append(f"duration {end - begin:.6f}")
    lines.append(f"file 'c{len(runs) - 1:05d}.png'")  # the concat demuxer needs the last image twice
    (workdir / "captions.txt").write_text("\n".join(lines) + "\n")


def _caption(name: str, result: Timeline | ClipPrediction, t: float) -> tuple[str, bool]:
    """``("lrcn: Archery 93%", uncertain)`` for time ``t``. ASCII only: OpenCV's fonts have no other glyphs."""
    if isinstance(result, Timeline):
        label, p = result.label_at(t)
        best = result.classes[int(result.probs_at(t).argmax())]
    else:
        label, p, best = result.label, float(result.probs.max()), result.top[0].label
    if label == UNCERTAIN:
        return f"{name}: {UNCERTAIN} (best guess {best} {p:.0%})", True
    return f"{name}: {label} {p:.0%}", False


class _Overlay:
    """Caption lines in a dark box at the top left, sized to the frame, rendered once per caption change as a
    transparent image (:meth:`rgba`) that ffmpeg lays over the frames."""

    FONT = cv2.FONT_HERSHEY_SIMPLEX
    SCALE_AT_720 = 0.9  # font scale on a 720-pixel short side: text about 24 px high, a line about 36 px
    MIN_SCALE = 0.3  # the smallest legible size (text 8 px high): a line of 12 px, a tenth of a 120-pixel frame

    def __init__(self, lines: tuple[tuple[str, bool], ...], size: tuple[int, int]):
        w, h = size
        # font, thickness, padding and so the band's height all follow the frame's short side
        scale = max(self.MIN_SCALE, min(h, w) / 720 * self.SCALE_AT_720)
        widest = max(cv2.getTextSize(t, self.FONT, 1.0, 2)[0][0] for t, _ in lines)
        scale = max(self.MIN_SCALE, min(scale, (w - 16) / max(widest, 1)))  # long captions on narrow videos shrink
        self.thick = max(1, int(round(scale * 2)))
        self.scale = scale
        self.pad = max(2, int(round(8 * scale)))
        (tw, th), base = cv2.getTextSize("Ag", self.FONT, scale, self.thick)
        self.line_h = th + base + self.pad
        self.lines = lines
        box_w = max(cv2.getTextSize(t, self.FONT, scale, self.thick)[0][0] for t, _ in lines) + 2 * self.pad
        self.box = (min(w, box_w), min(h, self.line_h * len(lines) + self.pad))
        self.ascent = th

    def rgba(self, canvas: tuple[int, int]) -> np.ndarray:
        """BGRA image ``canvas`` (w, h) large: the box darkens what lies under it to a quarter (alpha 3/4), the
        text is opaque with anti-aliased edges; transparent outside the box."""
        cw, ch = canvas
        bw, bh = self.box
        coverage = np.zeros((ch, cw), np.uint8)
        colour = np.zeros((ch, cw, 3), np.float32)
        for i, (text, uncertain) in enumerate(self.lines):
            y = self.pad + self.ascent + i * self.line_h
            mask = np.zeros_like(coverage)
            cv2.putText(mask, text, (self.pad, y), self.FONT, self.scale, 255, self.thick, cv2.LINE_AA)
            colour[mask > 0] = (0, 200, 255) if uncertain else (255, 255, 255)  # BGR: amber when uncertain
            np.maximum(coverage, mask, out=coverage)
        c = coverage.astype(np.float32)[..., None] / 255.0
        # straight alpha a with a*fg + (1-a)*bg == c*colour + (1-c)*bg/4: a = 3/4 + c/4, fg = c*colour/a
        alpha = np.zeros((ch, cw, 1), np.float32)
        alpha[:bh, :bw] = 0.75 + 0.25 * c[:bh, :bw]
        fg = np.divide(c * colour, alpha, out=np.zeros_like(colour), where=alpha > 0)
        return np.concatenate([np.round(fg), np.round(alpha * 255)], axis=-1).clip(0, 255).astype(np.uint8)

"""The annotated copy's caption is sized to the video: a small band on a small video, readable on a large one.
Measured on the frames ffmpeg wrote: the rows that differ from the flat source, against the written frame's height
(a small source is written larger: har.media.annotation.output_size)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_video

from har import annotate
from har.media.video import open_video
from har.serve.results import ClipPrediction

CLASSES = ("ApplyEyeMakeup", "Archery", "PlayingViolin", "Rowing", "Surfing", "TaiChi")
GREY = 160  # a flat frame: the caption's dark box shows on every row it covers


def _prediction(model: str, sure: bool) -> ClipPrediction:
    probs = np.array([0.05, 0.75, 0.05, 0.05, 0.05, 0.05] if sure else [0.1, 0.3, 0.15, 0.15, 0.15, 0.15],
                     np.float32)
    return ClipPrediction(model, CLASSES, probs, uncertain_below=0.5)


def _caption_rows(tmp_path, size: tuple[int, int], results: dict) -> tuple[int, int]:
    """``(rows, height)``: the rows at the top of an annotated frame that differ from the flat grey source, and
    the frame's height."""
    w, h = size
    src = write_video(tmp_path / f"grey-{w}x{h}.avi", 10, "MJPG", size=size,
                      make=lambda i, w, h: np.full((h, w, 3), GREY, np.uint8))
    out = annotate(src, tmp_path / f"out-{w}x{h}.mp4", results)
    cap = open_video(out)
    try:
        frames = [cap.read()[1] for _ in range(5)]
    finally:
        cap.release()
    diff = np.abs(frames[-1].astype(np.int16) - GREY).max(axis=(1, 2))  # (h,): the largest change in each row
    changed = np.flatnonzero(diff > 24)  # beyond what H.264 does to a flat grey frame
    assert changed.size and changed[0] < 3, "no caption at the top of the frame"
    return int(changed[-1]) + 1, frames[-1].shape[0]


@pytest.mark.parametrize("size", [(160, 120), (640, 360)])
def test_the_caption_band_covers_a_small_part_of_the_frame(tmp_path, size):
    unsure = {"LRCN": _prediction("lrcn", sure=False)}  # the longest line
    both = {"LRCN": _prediction("lrcn", sure=True), "ConvLSTM": _prediction("convlstm", sure=True)}  # two lines
    for results in (unsure, both):
        rows, height = _caption_rows(tmp_path, size, results)
        assert rows <= 0.15 * height, f"{len(results)} caption line(s): {rows} of {height} rows"


def test_the_caption_stays_readable_on_720p(tmp_path):
    rows, height = _caption_rows(tmp_path, (1280, 720), {"LRCN": _prediction("lrcn", sure=True)})
    assert height == 720 and 30 <= rows <= 0.15 * height, f"{rows} of {height} rows"  # text about 24 px high

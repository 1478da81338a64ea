"""har.media.video: exact frame choice in one pass, every container we claim, short clips, lying headers, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import read_index, write_video

from har.errors import VideoError
from har.media.video import count_frames, iter_frames, probe, sample_clip, sample_indices


def chosen(video, frames=20, size=64) -> list[int]:
    clip = sample_clip(video, frames, size)
    assert clip.shape == (frames, size, size, 3) and clip.dtype == np.uint8
    return [read_index(f) for f in clip]


def test_sample_indices_are_segment_centres():
    assert sample_indices(100, 4).tolist() == [12, 37, 62, 87]
    assert sample_indices(20, 20).tolist() == list(range(20))
    # fewer frames than asked: each frame repeated evenly, in order
    assert sample_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    assert sample_indices(1, 5).tolist() == [0] * 5
    idx = sample_indices(977, 20)
    assert idx[0] >= 0 and idx[-1] <= 976 and np.all(np.diff(idx) > 0)


@pytest.mark.parametrize(
    "name,fourcc,size",
    [
        ("a.avi", "MJPG", (320, 240)),
        ("b.mp4", "mp4v", (320, 240)),
        ("c.mov", "mp4v", (320, 240)),
        ("d.mkv", "MJPG", (321, 241)),  # odd size
        ("e.webm", "VP80", (320, 240)),
        ("f.avi", "XVID", (176, 144)),
    ],
)
def test_exact_frames_every_container(tmp_path, name, fourcc, size):
    video = write_video(tmp_path / name, 137, fourcc, size=size)
    assert chosen(video) == sample_indices(137, 20).tolist()


def test_rgb_and_resize(tmp_path):
    # a pure blue BGR frame must come out blue in RGB order
    blue = (255, 0, 0)  # BGR
    video = write_video(tmp_path / "blue.avi", 5, "MJPG", make=lambda i, w, h: np.full((h, w, 3), blue, np.uint8))
    clip = sample_clip(video, frames=4, size=32)
    assert clip.shape == (4, 32, 32, 3)
    r, g, b = clip[..., 0].mean(), clip[..., 1].mean(), clip[..., 2].mean()
    assert b > 200 and r < 40 and g < 40


@pytest.mark.parametrize("frames", [1, 3, 19])
def test_short_clip_is_padded_by_repeating(tmp_path, frames):
    video = write_video(tmp_path / "short.avi", frames, "MJPG")
    got = chosen(video)
    assert got == sample_indices(frames, 20).tolist()
    assert sorted(set(got)) == list(range(frames))  # every frame used, none invented


@pytest.mark.parametrize("name,fourcc", [("t.avi", "MJPG"), ("t.mkv", "MJPG"), ("t.webm", "VP80")])
def test_right_when_the_container_lies_about_its_length(tmp_path, name, fourcc):
    full = write_video(tmp_path / f"full{name}", 100, fourcc)
    data = full.read_bytes()
    truncated = tmp_path / name
    truncated.write_bytes(data[: len(data) // 2])  # header still says 100 frames
    reported = probe(truncated).frame_count
    real, _ = count_frames(truncated)
    assert 0 < real < 100 and reported != real, (reported, real)
    assert chosen(truncated) == sample_indices(real, 20).tolist()


def test_shared_clip_matches_reading_every_frame(ucf):
    clip_path = sorted((ucf / "Surfing").glob("*.mp4"))[0]
    cap = cv2.VideoCapture(str(clip_path))
    everything = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        everything.append(img)
    cap.release()
    expected = [
        cv2.cvtColor(cv2.resize(everything[i], (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        for i in sample_indices(len(everything), 20)
    ]
    np.testing.assert_array_equal(sample_clip(clip_path), np.stack(expected))


def test_iter_frames_streams_small_frames_with_times(tmp_path):
    video = write_video(tmp_path / "s.avi", 50, "MJPG", fps=10.0)
    frames = list(iter_frames(video, size=32))
    assert [f.index for f in frames] == list(range(50))
    assert all(f.image.shape == (32, 32, 3) for f in frames)
    assert [read_index(f.image) for f in frames] == list(range(50))
    times = np.array([f.t for f in frames])
    np.testing.assert_allclose(times, np.arange(50) / 10.0, atol=1e-3)
    # every_s: only the first frame at or after each half second is retrieved
    half = list(iter_frames(video, size=32, every_s=0.5))
    assert [f.index for f in half] == list(range(0, 50, 5))
    full = next(iter(iter_frames(video, size=None)))
    assert full.image.shape == (240, 320, 3)


def test_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(VideoError, match="'nope.mp4' does not exist"):
        sample_clip(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match=r"'empty.mp4' is empty \(0 bytes\)"):
        sample_clip(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("hello, this is not a video\n" * 20)
    with pytest.raises(VideoError, match="'notes.mp4' is a text file, not a video"):
        sample_clip(text)
    png = tmp_path / "picture.mp4"
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    png.write_bytes(buf.tobytes())
    with pytest.raises(VideoError, match="'picture.mp4' is a PNG image, not a video"):
        sample_clip(png)
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="'noise.mp4' is not a video that can be decoded"):
        sample_clip(noise)
    whole = write_video(tmp_path / "whole.mp4", 30, "mp4v")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # mp4v puts its index at the end
    with pytest.raises(VideoError, match="'cut.mp4' looks like an MP4/MOV file but cannot be decoded: it is probably"):
        sample_clip(cut)
    with pytest.raises(VideoError, match="is a folder, not a video file"):
        sample_clip(tmp_path)


def test_model_frames_of_large_videos_are_halved_first_and_stay_within_two_levels_of_one_resize(wild):
    from har.media.video import to_model_frame

    cap = cv2.VideoCapture(str(wild / "golf-fitting.mp4"))  # 1280x720
    ok, big = cap.read()
    cap.release()
    assert ok and big.shape[:2] == (720, 1280)
    direct = cv2.cvtColor(cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    got = to_model_frame(big, 64)
    assert got.shape == (64, 64, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - direct.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.5 and diff.max() > 0  # halved first: close, not identical
    small = cv2.resize(big, (320, 240), interpolation=cv2.INTER_AREA)  # UCF101's size: one resize, as trained
    np.testing.assert_array_equal(to_model_frame(small, 64),
                                  cv2.cvtColor(cv2.resize(small, (64, 64), interpolation=cv2.INTER_AREA),
                                               cv2.COLOR_BGR2RGB))

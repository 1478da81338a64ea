"""har.data.dataset: indexing, group-aware splits (no group on two sides), the frame cache, the tf.data pipeline, CLI
index."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import write_video

from har.config import Sampling
from har.data import dataset as data
from har.errors import DatasetError


def test_index_parses_classes_and_groups(ucf):
    index = data.index_dataset(ucf)
    assert index.classes == ("Archery", "BasketballDunk", "HorseRace", "PlayingPiano", "PlayingViolin", "Surfing")
    assert len(index.clips) == 529
    groups = index.groups()
    assert len(groups) == 6 * 18  # g08..g25 of each class; group ids are per class
    clip = next(c for c in index.clips if c.path.name == "v_Archery_g08_c01.mp4")
    assert clip.label == "Archery" and clip.group == "Archery/g08"
    assert all(c.group.startswith(c.label + "/g") for c in index.clips)


def test_clip_without_group_id_is_its_own_group(tmp_path):
    for cls in ("Jump", "Run"):
        (tmp_path / cls).mkdir()
        write_video(tmp_path / cls / f"v_{cls}_g01_c01.avi", 5, "MJPG")
        write_video(tmp_path / cls / f"v_{cls}_g01_c02.avi", 5, "MJPG")
        write_video(tmp_path / cls / "holiday.mp4", 5, "mp4v")
    (tmp_path / "Run" / "notes.txt").write_text("not a video")
    index = data.index_dataset(tmp_path)
    assert index.classes == ("Jump", "Run")
    assert sorted(index.groups()) == ["Jump/g01", "Jump/holiday", "Run/g01", "Run/holiday"]
    assert len(index.groups()["Jump/g01"]) == 2


def test_index_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist or is not a folder"):
        data.index_dataset(tmp_path / "missing")
    (tmp_path / "Empty").mkdir()
    with pytest.raises(DatasetError, match="No videos found under"):
        data.index_dataset(tmp_path)


def test_split_is_group_aware_stratified_and_seeded(ucf):
    index = data.index_dataset(ucf)
    split = data.split_groups(index, seed=0)
    sides = [set(split[s]) for s in data.SPLITS]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert set().union(*sides) == set(index.groups())
    # no clip's group on two sides, checked on the clips themselves
    clip_sides = {s: {c.path for c in data.clips_of(index, split[s])} for s in data.SPLITS}
    assert sum(len(v) for v in clip_sides.values()) == len(index.clips)
    for s in data.SPLITS:  # every class on every side
        assert {g.split("/")[0] for g in split[s]} == set(index.classes)
    per_class_test = {c: sum(g.startswith(c + "/") for g in split["test"]) for c in index.classes}
    assert set(per_class_test.values()) == {4}  # 20% of 18 groups, rounded
    assert data.split_groups(index, seed=0) == split
    assert data.split_groups(index, seed=1) != split


def test_cache_second_run_decodes_nothing(ucf, tmp_path, monkeypatch):
    index = data.index_dataset(ucf)
    clips = index.clips[:4]
    sampling = Sampling(frames=8, size=32)
    first = data.load_frames(clips, sampling, tmp_path / "cache", workers=2)
    assert first.shape == (4, 8, 32, 32, 3) and first.dtype == np.uint8
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a clip that is cached")

    monkeypatch.setattr(data, "sample_clip", no_decoding)
    second = data.load_frames(clips, sampling, tmp_path / "cache", workers=2)
    np.testing.assert_array_equal(first, second)
    # another sampling config is another key
    with pytest.raises(AssertionError, match="decoded a clip"):
        data.load_frames(clips[:1], Sampling(frames=9, size=32), tmp_path / "cache", workers=1)


def test_cache_key_follows_content(tmp_path):
    a = write_video(tmp_path / "a.avi", 10, "MJPG")
    key = data.cache_key(a, Sampling())
    shutil.copy(a, tmp_path / "b.avi")
    assert data.cache_key(tmp_path / "b.avi", Sampling()) == key  # same bytes, same key, wherever it lives
    write_video(tmp_path / "a.avi", 11, "MJPG")
    assert data.cache_key(a, Sampling()) != key


def test_tf_data_pipeline_batches_uint8():
    import tensorflow as tf

    x = np.random.default_rng(0).integers(0, 256, (10, 6, 16, 16, 3), dtype=np.uint8)
    y = np.arange(10) % 3
    ds = data.make_dataset(x, y, batch_size=4)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0][0].dtype == tf.uint8 and batches[0][1].dtype == tf.int32
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), x)  # evaluation keeps order
    shuffled = data.make_dataset(x, y, 4, shuffle_seed=3, map_fn=lambda clip, seed: clip)
    labels = np.concatenate([b[1].numpy() for b in shuffled])
    assert sorted(labels.tolist()) == sorted(y.tolist())


def test_cli_index(ucf, tmp_path, cli):
    out = cli("index", str(ucf))
    assert out.returncode == 0, out.stderr
    assert "6 classes, 529 clips, 108 groups" in out.stdout
    assert "Archery" in out.stdout and "104" in out.stdout
    js = cli("index", str(ucf), "--json")
    report = json.loads(js.stdout.strip().splitlines()[-1])
    assert report["clips"] == 529 and report["groups"] == 108 and report["unreadable"] == []
    assert report["classes"]["PlayingViolin"]["clips"] == 72
    assert 3000 < report["seconds"] < 4000

    (tmp_path / "A").mkdir()
    write_video(tmp_path / "A" / "ok.avi", 5, "MJPG")
    (tmp_path / "A" / "broken.mp4").write_bytes(b"\0" * 100)
    out = cli("index", str(tmp_path))
    assert out.returncode == 0
    assert "1 unreadable file(s)" in out.stdout and "broken.mp4" in out.stdout

    bad = cli("index", str(tmp_path / "nowhere"))
    assert bad.returncode == 1
    expected = f"error: Dataset folder {tmp_path / 'nowhere'} does not exist or is not a folder."
    assert bad.stderr.strip().splitlines() == [expected]

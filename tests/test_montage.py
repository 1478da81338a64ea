"""har.data.montage: montages of real clips with their true segments, and segment scores against them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from har.data.dataset import clips_of, index_dataset
from har.data.montage import FPS, TrueSegment, build, iou, score, summarize
from har.media.video import count_frames


@dataclass
class Seg:
    start_s: float
    end_s: float
    label: str


def test_iou():
    assert iou((0, 4), (2, 6)) == pytest.approx(2 / 6)
    assert iou((0, 1), (2, 3)) == 0.0 and iou((1, 3), (1, 3)) == 1.0


def test_scores_match_one_to_one_by_label_and_iou():
    truth = [TrueSegment(0, 4, "A", "a"), TrueSegment(4, 6.5, "B", "b"), TrueSegment(6.5, 12, "A", "c")]
    exact = score(truth, [Seg(0, 4, "A"), Seg(4, 6.5, "B"), Seg(6.5, 12, "A")])
    assert exact["matched"] == 3 and exact["boundary_errors"] == [0, 0] and exact["found"] == [True] * 3
    # the short B piece swallowed by its neighbours: two segments found, one boundary 2.5 s off, one missed
    merged = score(truth, [Seg(0, 6.5, "A"), Seg(6.5, 12, "A")])
    assert merged["matched"] == 2 and merged["found"] == [True, False, True]
    assert merged["boundary_errors"] == [pytest.approx(2.5), 0.0]
    # a right label with too little overlap does not count; one predicted segment matches one true segment only
    assert score(truth, [Seg(0, 12, "A")])["matched"] == 0
    s = summarize([exact, merged])
    assert s["segments"] == 6 and s["predicted"] == 5 and s["recall"] == pytest.approx(5 / 6, abs=1e-4)
    assert s["precision"] == 1.0 and s["short_pieces"] == 2 and s["short_recall"] == 0.5
    assert s["mean_boundary_error_s"] == pytest.approx(2.5 / 4, abs=1e-3)


def test_a_montage_of_real_clips_has_its_true_segments(ucf, tmp_path):
    index = index_dataset(ucf)
    clips = clips_of(index, ["Archery/g08", "Surfing/g08", "HorseRace/g08"])
    out = tmp_path / "m.avi"
    truth = build(clips, out, seed=3, pieces=4)
    assert len(truth) == 4 and all(a.label != b.label for a, b in zip(truth, truth[1:], strict=False))
    assert truth[0].start_s == 0 and all(a.end_s == b.start_s for a, b in zip(truth, truth[1:], strict=False))
    assert all(0.04 <= t.end_s - t.start_s <= 10.0 for t in truth)
    frames, _ = count_frames(out)
    assert frames == pytest.approx(truth[-1].end_s * FPS, abs=1)
    assert build(clips, tmp_path / "again.avi", seed=3, pieces=4) == truth  # seeded

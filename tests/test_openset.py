"""The open-set score (issue 17): familiarity on real clips and a real wild video, the stored statistics, their
provenance, and a model directory without them."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from har.config import ModelConfig
from har.errors import ModelError
from har.openset.score import CHOSEN, OPENSET_FILE, Familiarity, describe, fit_grouped, softmax

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WILD = DATA / "wild" / "rowing-commercial.mp4"


@pytest.fixture(scope="module")
def lrcn(shipped):
    return shipped("lrcn", "onnx")


def test_a_training_clip_is_familiar_and_a_wild_video_is_flagged(lrcn):
    from har.data.dataset import clips_of, index_dataset
    from har.serve.results import UNCERTAIN

    config = lrcn.config
    clip = clips_of(index_dataset(DATA / config.data), config.split["train"])[0]
    known = lrcn.classify(clip.path)
    assert known.familiarity is not None and known.familiar_above == lrcn.familiarity.threshold
    assert known.familiarity > known.familiar_above and not known.unfamiliar
    assert known.to_dict()["open_set"] == "familiarity"

    timeline = lrcn.timeline(WILD)
    fam = timeline.window_familiarity
    assert fam is not None and fam.shape == timeline.window_starts.shape
    assert np.mean(fam < lrcn.familiarity.threshold) > 0.3  # a rowing-machine advert is none of the six
    assert any(s.label == UNCERTAIN for s in timeline.segments)
    assert (timeline.unknown > 0.5).any()  # the decoder's unknown state was fed from the familiarity
    assert timeline.to_dict()["window_familiarity"][0] == pytest.approx(float(fam[0]), abs=1e-4)


def test_the_stored_statistics_round_trip_and_score_the_same(tmp_path):
    fam = Familiarity.load(REPO / "models" / "lrcn")
    assert fam is not None
    fam.save(tmp_path)
    back = Familiarity.load(tmp_path)
    np.testing.assert_array_equal(back.bank, fam.bank)
    np.testing.assert_array_equal(back.mean, fam.mean)
    assert (back.threshold, back.k, back.info) == (fam.threshold, fam.k, fam.info)
    np.testing.assert_array_equal(back.combine, fam.combine)
    assert back.evidence == fam.evidence and back.needs_logits
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.5, (3, 20, 4, 4, fam.mean.shape[0])).astype(np.float32)
    logits = rng.normal(0, 3, (3, 6)).astype(np.float32)
    np.testing.assert_allclose(back(x, logits), fam(x, logits), rtol=1e-6)
    with pytest.raises(ModelError, match="logits"):
        fam(x)
    assert back.unknown_probability(np.array([fam.threshold]))[0] == pytest.approx(0.5)


def test_the_threshold_says_where_it_came_from():
    for name in ("lrcn", "convlstm"):
        directory = REPO / "models" / name
        config = ModelConfig.load(directory)
        fam = Familiarity.load(directory)
        assert config.openset == fam.info and fam.info["threshold"] == pytest.approx(fam.threshold, abs=1e-6)
        assert fam.info["keep"] == 0.95 and fam.info["k"] == 200
        evidence, weight = CHOSEN[config.arch]  # chosen on non-test groups (docs/openset.md)
        assert fam.evidence == evidence and fam.info["method"] == f"{evidence}+knn+gate"  # tests/test_outliers.py
        assert fam.combine[4] == weight == fam.info["knn_weight"]
        from har.data.dataset import clips_of, index_dataset

        index = index_dataset(DATA / config.data)
        n_known = len(clips_of(index, config.split["train"])) + len(clips_of(index, config.split["validation"]))
        assert fam.info["bank"] == len(fam.bank) == 9 * n_known  # every view of every non-test clip
        assert fam.info["threshold_from"] == n_known  # no test-group clip
        assert "held out" in fam.info["provenance"] and str(n_known) in fam.info["provenance"]


def test_the_grouped_threshold_keeps_its_share_of_held_out_clips():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1, (4, 16))
    groups = [f"C{g % 2}/g{g:02d}" for g in range(8) for _ in range(10)]
    x = np.stack([centres[int(g[-2:]) % 4] + 0.3 * rng.normal(0, 1, (3, 5, 16)) for g in groups])  # (80, 3, 5, 16)
    fam = fit_grouped(x[:60], groups[:60], x[60:], groups[60:], keep=0.9, k=5)
    assert fam.info["threshold_from"] == 80 and len(fam.bank) == 80 * 3  # every view of every known clip
    known = fam(x[:, 0])
    assert 0.8 <= np.mean(known >= fam.threshold) <= 1.0  # in-bank clips score at least as high as held-out ones
    far = fam.of_descriptors(describe(rng.normal(0, 1, (5, 5, 16)) * 3 + 7))
    assert np.all(far < fam.threshold)


def test_the_combined_threshold_keeps_its_share_counting_the_top_probability_rule():
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 1, (4, 16))
    groups = [f"C{g % 2}/g{g:02d}" for g in range(8) for _ in range(10)]
    x = np.stack([centres[int(g[-2:]) % 4] + 0.3 * rng.normal(0, 1, (3, 5, 16)) for g in groups])
    logits = rng.normal(0, 1, (80, 3)).astype(np.float32)
    logits[np.arange(80), rng.integers(0, 3, 80)] += 4.0  # a clear answer
    logits[:6] = 0.0  # a flat answer: top probability 1/3, rejected by the top-probability rule anyway
    fam = fit_grouped(x[:60], groups[:60], x[60:], groups[60:], keep=0.9, k=5, held_logits=logits,
                      uncertain_below=0.5, evidence="energy", weight=0.5)
    assert fam.needs_logits and fam.info["method"] == "energy+knn" and len(fam.bank) == 80 * 3
    assert 0.07 <= fam.info["rejected_by_top_probability"] < 0.1
    from har.openset.score import evidence_of, group_folds, operating_point

    # the threshold keeps 90 % of the clips scored held out (each against a bank without its fold), not in-bank
    raw = describe(x.reshape(-1, 5, 16)).reshape(80, 3, -1)
    fold, held_sim = group_folds(groups, 4), np.zeros(80, np.float32)
    for f in range(4):
        part = Familiarity.fit(raw[fold != f].reshape(-1, raw.shape[-1]), raw[fold == f][:, 0], 0.9, 5)
        held_sim[fold == f] = part.similarity(raw[fold == f][:, 0])
    held = fam.combined(evidence_of(logits, "energy"), held_sim)
    in_bank = fam(x[:, 0], logits)
    assert np.mean(in_bank) > np.mean(held)  # the bank's own clips look more familiar than held-out ones
    rejected = softmax(logits).max(axis=1) < 0.5
    share = fam.info["kept_in_sample"]
    assert 0.9 <= share < 1.0 and fam.info["nested_rejected"] <= 0.10
    assert fam.threshold == pytest.approx(operating_point(held, share, rejected)[0], abs=1e-5)
    assert fam.threshold != pytest.approx(operating_point(in_bank, share, rejected)[0], abs=1e-3)
    assert np.mean((held < fam.threshold) | rejected) == pytest.approx(1 - share, abs=0.02)

    known = np.arange(100, dtype=float)
    flat = known >= 95  # five clips the top-probability rule rejects already
    threshold, _ = operating_point(known, 0.9, flat)
    assert np.mean((known < threshold) | flat) == pytest.approx(0.10, abs=0.011)
    assert operating_point(known, 0.9)[0] == pytest.approx(np.quantile(known, 0.1))

    assert len(set(group_folds(groups, 4))) == 4
    e = evidence_of(logits, "energy")
    assert fam.combine[0] == pytest.approx(e.mean()) and fam.combine[1] == pytest.approx(e.std())
    with pytest.raises(ModelError, match="evidence"):
        evidence_of(logits, "entropy")


def test_the_operating_point_keeps_its_share_of_groups_it_was_not_set_on():
    from har.openset.score import grouped_operating_point, nested_rejected, operating_point

    rng = np.random.default_rng(3)
    fold = np.repeat(np.arange(4), 250)
    same = rng.normal(0, 1, 1000)  # every fold alike: the in-sample 10 % quantile carries over
    threshold, _, share = grouped_operating_point(same, fold, 0.9)
    assert share < 0.92 and threshold == pytest.approx(operating_point(same, share)[0])
    shifted = same + np.array([-1.0, 0.0, 0.3, 0.6])[fold]  # one fold of groups unlike the others
    assert nested_rejected(shifted, fold, 0.9, np.zeros(1000, bool)).mean() > 0.12
    threshold, _, share = grouped_operating_point(shifted, fold, 0.9)
    assert share > 0.93 and nested_rejected(shifted, fold, share, np.zeros(1000, bool)).mean() <= 0.10
    assert np.mean(shifted < threshold) == pytest.approx(1 - share, abs=0.002)


def test_a_model_copy_without_logits_is_served_on_the_top_probability(tmp_path, caplog):
    import onnx

    import har

    directory = tmp_path / "lrcn"
    shutil.copytree(REPO / "models" / "lrcn", directory)
    head = onnx.load(str(directory / "head.onnx"))  # as exported before the open-set score read logits
    del head.graph.output[1:]
    onnx.save(head, str(directory / "head.onnx"))
    with caplog.at_level(logging.WARNING):
        rec = har.Recognizer(directory, runtime="onnx")
    assert rec.familiarity is None and "logits" in caplog.text and "top probability alone" in caplog.text
    clip = rec.classify(REPO / "examples" / "v_Surfing_g22_c02.mp4")
    assert clip.familiarity is None and clip.to_dict()["open_set"] == "top probability only"


def test_a_model_directory_without_open_set_files_serves_on_the_top_probability(tmp_path, caplog):
    import har

    directory = tmp_path / "lrcn"
    shutil.copytree(REPO / "models" / "lrcn", directory)
    (directory / OPENSET_FILE).unlink()
    with caplog.at_level(logging.WARNING):
        rec = har.Recognizer(directory, runtime="onnx")
    assert rec.familiarity is None and OPENSET_FILE in caplog.text and "top probability alone" in caplog.text
    pred = rec.classify(REPO / "examples" / sorted(p.name for p in (REPO / "examples").glob("*.mp4"))[0])
    assert pred.familiarity is None and not pred.unfamiliar
    out = pred.to_dict()
    assert out["open_set"] == "top probability only" and out["familiarity"] is None
    assert json.loads(json.dumps(out))["uncertain"] == (float(pred.probs.max()) < pred.uncertain_below)


def test_the_dashboard_reads_the_stored_open_set_results():
    from har.openset import report as openset_report
    from har.reports.dashboard import DISPLAY, MODEL_COLORS

    reports = openset_report.load_reports(["lrcn", "convlstm", "lrcn_scratch"], REPO / "models")
    assert sorted(reports) == ["convlstm", "lrcn"]  # the from-scratch model has no open-set score
    table = openset_report.openset_table(reports, DISPLAY)
    lrcn = json.loads((REPO / "models" / "lrcn" / "openset.json").read_text())
    assert list(table["model"]) == ["LRCN", "ConvLSTM"]
    assert table["known test clips rejected"][0] == f"{lrcn['operating_point']['known_rejected']:.1%}"
    assert list(table["score"]) == ["energy+knn+gate"] * 2  # as measured, the methods shipped
    roc = openset_report.roc_figure(reports, DISPLAY, MODEL_COLORS)
    curves = [t for t in roc.data if t.mode == "lines" and "AUROC" in (t.name or "")]
    assert len(curves) == 4 and all(t.x[0] == 0 and t.y[0] == 0 for t in curves)
    others = openset_report.others_roc_figure(reports, DISPLAY, MODEL_COLORS)
    lines = [t for t in others.data if t.mode == "lines" and "AUROC" in (t.name or "")]
    assert len(lines) == 2 and f"AUROC {lrcn['other_actions']['mean']['auroc']:.2f}" in lines[0].name
    cal = openset_report.calibration_figure(reports, DISPLAY, MODEL_COLORS)
    assert any("ECE" in (t.name or "") for t in cal.data)
    assert "No open-set results" in openset_report.roc_figure({}, DISPLAY, MODEL_COLORS).layout.annotations[0].text
    assert openset_report.auroc(np.array([2.0, 3.0]), np.array([1.0])) == 1.0
    assert openset_report.auroc(np.array([1.0]), np.array([1.0])) == 0.5


def test_the_roc_is_thinned_without_warnings_and_runs_from_nothing_flagged_to_everything_flagged():
    import warnings

    from har.openset import report as openset_report

    rng = np.random.default_rng(0)
    known, unknown = rng.normal(1.0, 1.0, 400), rng.normal(-1.0, 1.0, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the thinning once took quantiles next to +inf: NaN and a RuntimeWarning
        curve = openset_report.roc(known, unknown, points=51)
    fpr, tpr = np.array(curve["fpr"]), np.array(curve["tpr"])
    assert len(fpr) <= 53 and np.isfinite(fpr).all() and np.isfinite(tpr).all()
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # the thinned curve keeps the AUROC close
    assert abs(area - openset_report.auroc(known, unknown)) < 0.02

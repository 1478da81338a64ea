"""What the open set learned from real clips of other actions: the gate, its held-out protocol, the shipped models'
decisions on real clips, and the stored figures' provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from har.config import ModelConfig
from har.openset.gate import Gate, fit_gate
from har.openset.outliers import GATE_CHOSEN, Others, held_out_gate, leave_other_class_out
from har.openset.score import Familiarity

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OTHERS = DATA / "other-actions"
MODELS = ("lrcn", "convlstm")


def _world(seed: int = 0):
    """Two known classes in eight groups and three other classes, as raw descriptors ``(clips, views, C)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (5, 12)) * 3
    groups = [f"{'AB'[g % 2]}/g{g:02d}" for g in range(8) for _ in range(5)]
    labels = np.array([g % 2 for g in range(8) for _ in range(5)])
    raw = np.stack([centres[y] + rng.normal(0, 1, (3, 12)) for y in labels])
    ocls = np.repeat(np.arange(3), 6)
    oraw = np.stack([centres[2 + c] + rng.normal(0, 1, (3, 12)) for c in ocls])
    others = Others(oraw, ocls, ["X", "Y", "Z"], [f"{'XYZ'[c]}/g{i % 3:02d}" for i, c in enumerate(ocls)])
    from har.openset.score import group_folds

    return raw, labels, group_folds(groups), others


def test_the_gate_tells_known_from_other_and_scores_by_log_odds():
    raw, labels, _, others = _world()
    gate = fit_gate(raw.reshape(-1, 12), np.repeat(labels, 3), 2, others.without(None))
    assert gate.kernel.shape == (12, 3) and gate.bias.shape == (3,)
    assert (gate.score(raw[:, 0]) > 0).mean() > 0.95 and (gate.score(others.raw[:, 0]) < 0).mean() > 0.95
    z = gate.logits(raw[:3, 0]).astype(np.float64)
    expected = np.log(np.exp(z[:, :2]).sum(axis=1)) - z[:, 2]
    np.testing.assert_allclose(gate.score(raw[:3, 0]), expected, rtol=1e-4, atol=1e-4)


def test_a_left_out_class_is_never_seen_by_the_gates_that_score_it():
    raw, labels, fold, others = _world()
    known, other = held_out_gate(raw, labels, 2, fold, others, leave_out=1)
    moved = Others(others.raw.copy(), others.classes, others.names, others.groups)
    moved.raw[others.classes == 1] += 100.0  # class Y somewhere else entirely
    known2, other2 = held_out_gate(raw, labels, 2, fold, moved, leave_out=1)
    np.testing.assert_allclose(known2, known, rtol=1e-5)  # the gates did not change: Y was not in them
    np.testing.assert_allclose(other2[:, others.classes != 1], other[:, others.classes != 1], rtol=1e-5)
    assert not np.allclose(other2[:, others.classes == 1], other[:, others.classes == 1])
    # a known clip's gate never saw its own fold: moving one fold's clips changes only that fold's scores' inputs
    shifted = raw.copy()
    shifted[fold == 0] += 0.5
    known3, _ = held_out_gate(shifted, labels, 2, fold, others, leave_out=1)
    assert not np.allclose(known3[fold == 0], known[fold == 0])


def test_leave_other_class_out_reports_each_class_with_its_groups():
    raw, labels, fold, others = _world()
    base_known = np.zeros(len(raw))
    base_other = np.zeros((4, len(others.raw)))
    result = leave_other_class_out(base_known, base_other, raw, labels, 2, fold, others, 1.0, 1e-2, 0.9,
                                   np.zeros(len(raw), bool))
    assert [r["left_out"] for r in result["per_class"]] == ["X", "Y", "Z"]
    assert result["per_class"][0]["groups"] == ["X/g00", "X/g01", "X/g02"]
    assert all(r["clips"] == 6 for r in result["per_class"])
    assert result["mean"]["flagged"] == pytest.approx(np.mean([r["flagged"] for r in result["per_class"]]),
                                                      abs=1e-4)
    assert result["mean"]["auroc"] > 0.75  # separate classes: one never seen is still told apart (0.5: chance)
    assert len(result["other"]) == 3 * 4 * 6  # each other clip by each fold's gate, each class in turn


def test_teaching_an_action_adds_a_known_column_and_keeps_the_others():
    raw, labels, _, others = _world()
    gate = fit_gate(raw.reshape(-1, 12), np.repeat(labels, 3), 2, others.without(None))
    gate = Gate(gate.kernel, gate.bias, others.without(None).astype(np.float16))
    new = others.raw[others.classes == 2][:3].reshape(-1, 12)  # teach Z from three clips' views
    taught = gate.taught(new, np.zeros(len(new), int))
    assert taught.kernel.shape == (12, 4)
    np.testing.assert_array_equal(taught.kernel[:, :2], gate.kernel[:, :2])
    np.testing.assert_array_equal(taught.kernel[:, -1], gate.kernel[:, -1])
    held = others.raw[others.classes == 2][3:, 0]  # Z clips the teaching did not see
    assert (gate.score(held) < 0).all() and (taught.score(held) > 0).all()
    assert (taught.score(others.raw[others.classes == 0][:, 0]) < 0).mean() > 0.8  # X is still other
    assert Gate(gate.kernel, gate.bias).taught(new, np.zeros(len(new), int)).kernel.shape == (12, 3)


@pytest.mark.parametrize("name", MODELS)
def test_the_shipped_score_records_what_it_learned_from(name):
    directory = REPO / "models" / name
    config = ModelConfig.load(directory)
    fam = Familiarity.load(directory)
    assert fam.gate is not None and fam.info["method"].endswith("+gate")
    assert config.openset == fam.info and config.hyper["others"] == OTHERS.name
    weight, l2 = GATE_CHOSEN[config.arch]
    assert fam.info["gate"]["weight"] == weight == float(fam.gate_combine[2]) and fam.info["gate"]["l2"] == l2
    names = sorted(p.name for p in OTHERS.iterdir() if p.is_dir())
    files = sorted(OTHERS.glob("*/*.mp4"))
    assert fam.info["others"]["classes"] == names and fam.info["others"]["clips"] == len(files)
    groups = sorted({f"{p.parent.name}/g{p.stem.split('_g')[1][:2]}" for p in files})
    assert fam.info["others"]["groups"] == groups
    assert fam.gate.others.shape == (len(files) * 9, fam.mean.shape[0])  # every view of every clip, for teaching
    loco = fam.info["leave_other_class_out"]
    assert [r["left_out"] for r in loco["per_class"]] == names
    for key in ("auroc", "flagged", "known_rejected"):
        assert loco["mean"][key] == pytest.approx(np.mean([r[key] for r in loco["per_class"]]), abs=1e-4)
    report = json.loads((directory / "openset.json").read_text())
    stored = report["other_actions"]
    assert stored["per_class"] == loco["per_class"] and stored["mean"] == loco["mean"]
    assert stored["classes"] == names and stored["groups"] == groups
    assert report["method"]["threshold"] == fam.info["threshold"]


@pytest.mark.parametrize("name", MODELS)
def test_a_boxing_clip_is_none_of_the_known_actions_and_a_known_clip_is_known(name, shipped, tmp_path):
    """Boxing is none of the six and none of the nine other actions the gate learned from (a real web video,
    never fitted on); a test-group clip of the six is answered."""
    import subprocess

    from har.data.dataset import clips_of, index_dataset
    from har.media.ffmpeg import ffmpeg_exe

    rec = shipped(name, "auto")
    clip = tmp_path / "boxing.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "20", "-t", "4", "-i",
                    str(DATA / "wild" / "boxing-montage.mp4"), "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(clip)], check=True)
    boxing = rec.classify(clip)
    assert boxing.unfamiliar, (boxing.familiarity, boxing.familiar_above)
    config = rec.config
    test = clips_of(index_dataset(DATA / config.data), config.split["test"])
    known = rec.classify(test[0].path)
    assert not known.unfamiliar and known.familiarity > known.familiar_above

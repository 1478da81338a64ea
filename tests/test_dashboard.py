"""har.reports.dashboard from hand-written model directories (no training), the app's pages built without any model, and
the shipped example clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO, need

from har import UNCERTAIN
from har.config import ModelConfig
from har.evaluation.evaluate import metrics
from har.media.video import probe
from har.reports import dashboard

CLASSES = ("Archery", "BasketballDunk", "HorseRace", "PlayingPiano", "PlayingViolin", "Surfing")
HISTORY = ("epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,epoch_seconds\n"
           "1,1.7,0.30,1.6,0.35,0.001,30.5\n2,1.2,0.55,1.3,0.50,0.001,29.8\n3,0.9,0.70,1.1,0.62,0.0009,30.1\n")


def write_model_dir(directory, arch: str, *, benchmark: bool = False, hyper: dict | None = None) -> None:
    """Every file training writes, by hand: config.json, history.csv, metrics.json, a stand-in model.keras."""
    directory.mkdir(parents=True)
    ModelConfig(arch=arch, preset="default", classes=CLASSES, epochs=3, best_epoch=3, train_seconds=95.0,
                params=123_456, split={"test": ["Archery/g08", "Surfing/g22"]}, hyper=hyper or {}).save(directory)
    (directory / "history.csv").write_text(HISTORY)
    y = np.arange(12) % 6
    (directory / "metrics.json").write_text(json.dumps(metrics(y, np.where(y == 2, 3, y), CLASSES)))
    (directory / "model.keras").write_bytes(b"\0" * 2_500_000)
    if benchmark:
        (directory / "benchmark.json").write_text(json.dumps({"forward_ms": 6.5, "batch": 1, "device": "cpu"}))


def test_complete_incomplete_and_missing_directories(tmp_path):
    write_model_dir(tmp_path / "lrcn", "lrcn", benchmark=True)
    (tmp_path / "convlstm").mkdir()
    (tmp_path / "convlstm" / "history.csv").write_text(HISTORY)  # a run that has not finished
    records = dashboard.load_records(root=tmp_path)
    lrcn, convlstm, lrcn_s, convlstm_s, lrcn_t, convlstm_t = records
    assert lrcn.complete and lrcn.size_bytes == 2_500_000 and lrcn.benchmark["forward_ms"] == 6.5
    assert convlstm.problems == [f"{tmp_path.name}/convlstm is incomplete (training unfinished?): no config.json, "
                                 "model.keras, metrics.json."]
    assert convlstm.history is not None and convlstm.label == "ConvLSTM"
    assert lrcn_t.label == "LRCN (tutorial)" and "does not exist" in lrcn_t.problems[0]
    assert convlstm_s.label == "ConvLSTM (from scratch)" and "does not exist" in convlstm_s.problems[0]

    notice = dashboard.notice(records)
    assert "**ConvLSTM**" in notice and "no config.json" in notice and "**ConvLSTM (tutorial)**" in notice
    assert "**LRCN**:" not in notice
    # the shipped model that is missing files gets the one command that trains it again; the complete one does not
    # (a directory outside the repository is named by its path)
    assert f"`python -m har train --like {tmp_path / 'convlstm'}`" in notice and "lrcn`" not in notice

    table = dashboard.summary_table(records)
    assert list(table["Model"]) == ["LRCN", "ConvLSTM", "LRCN (from scratch)", "ConvLSTM (from scratch)",
                                   "LRCN (tutorial)", "ConvLSTM (tutorial)"]
    row = table.iloc[0]
    assert (row["Test accuracy"], row["Parameters"], row["Size on disk"]) == ("0.833", "123,456", "2.5 MB")
    assert (row["Forward pass, ms/clip"], row["Epochs (best)"], row["Training time"]) == ("6.5 (cpu)", "3 (3)",
                                                                                         "2 min")
    assert table.iloc[1]["Test accuracy"] == "—" and table.iloc[1]["Forward pass, ms/clip"] == "not measured"
    (tmp_path / "lrcn" / "benchmark.json").write_text(json.dumps({"forward_ms": 23.3, "onnx_forward_ms": 10.9,
                                                                  "device": "cpu"}))
    table = dashboard.summary_table(dashboard.load_records(root=tmp_path))
    assert table.iloc[0]["Forward pass, ms/clip"] == "TensorFlow 23.3, ONNX Runtime 10.9 (cpu)"

    main = records[:2]
    assert not dashboard.refit_shipped(records)
    curves = dashboard.curves_figure(main)
    names = [t.name for t in curves.data]
    assert names.count("LRCN train") == 2 and names.count("ConvLSTM validation") == 2  # loss and accuracy panels
    assert "LRCN kept (epoch 3)" in names  # best epoch marked; ConvLSTM has no config to say which
    assert [t.name for t in dashboard.per_class_figure(main).data] == ["LRCN"] * 3
    (heatmap,) = dashboard.confusion_figure(main).data
    assert heatmap.text.tolist()[2] == [0, 0, 0, 2, 0, 0]  # both HorseRace clips taken for PlayingPiano
    assert dashboard.split_table(lrcn).set_index("Class").loc["Surfing", "test"] == "g22"


def test_an_averaged_model_is_shown_as_the_average_of_its_epochs(tmp_path):
    write_model_dir(tmp_path / "lrcn", "lrcn", hyper={"shipped": "average of epochs 2-3", "average_val_loss": 1.05})
    records = dashboard.load_records(root=tmp_path)
    assert dashboard.summary_table(records).iloc[0]["Epochs (best)"] == "3 (2–3 averaged)"
    marks = [t for t in dashboard.curves_figure(records[:1]).data if "kept" in t.name]
    assert [(t.name, list(t.x), list(t.y)) for t in marks] == [("LRCN kept (average of epochs 2–3)", [2, 3],
                                                               [1.05, 1.05])]


def test_a_refit_model_shows_its_own_curves_and_the_epoch_that_chose_its_length(tmp_path):
    write_model_dir(tmp_path / "lrcn", "lrcn", hyper={"shipped": "refit on training + validation groups, 3 epochs"})
    (tmp_path / "lrcn" / "refit_history.csv").write_text(
        "epoch,loss,accuracy,learning_rate,epoch_seconds\n1,1.6,0.33,0.001,40.1\n2,1.1,0.58,0.001,39.5\n"
        "3,0.8,0.74,0.0009,39.9\n")
    records = dashboard.load_records(root=tmp_path)
    assert records[0].complete and list(records[0].refit_history["loss"]) == [1.6, 1.1, 0.8]
    assert dashboard.refit_shipped(records)
    assert dashboard.summary_table(records).iloc[0]["Epochs (best)"] == "3 (3) + 3 refit"
    traces = {t.name: t for t in dashboard.curves_figure(records[:1]).data}
    refit = [t for t in dashboard.curves_figure(records[:1]).data if "refit on train+val" in t.name]
    assert [list(t.y) for t in refit] == [[1.6, 1.1, 0.8], [0.33, 0.58, 0.74]]  # loss and accuracy panels
    assert "LRCN refit length chosen (epoch 3)" in traces and "LRCN kept (epoch 3)" not in traces
    (tmp_path / "lrcn" / "refit_history.csv").write_text("epoch,loss\n1,1.6\n")
    broken = dashboard.load_records(root=tmp_path)[0]
    assert broken.problems == [f"{tmp_path.name}/lrcn/refit_history.csv lacks columns: accuracy."]


def test_nothing_stored_still_renders(tmp_path):
    records = dashboard.load_records(root=tmp_path / "nowhere")
    assert all(not r.complete for r in records)
    for make in (dashboard.curves_figure, dashboard.per_class_figure, dashboard.confusion_figure):
        fig = make(records)
        assert not fig.data and "No " in fig.layout.annotations[0].text
    assert dashboard.summary_table(records)["Test accuracy"].tolist() == ["—"] * 6


def test_timeline_and_segments_of_a_result():
    result = {"duration_s": 4.2, "uncertain_below": 0.5,
              "per_second": {"t": [0, 1, 2, 3, 4], "classes": ["A", "B"],
                             "probs": [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]]},
              "segments": [{"start_s": 0, "end_s": 2, "label": "A", "score": 0.85},
                           {"start_s": 2, "end_s": 4.2, "label": "B", "score": 0.7}]}
    fig = dashboard.timeline_figure({"LRCN": result, "ConvLSTM": result}, 0.5)
    assert len(fig.data) == 4 and [t.showlegend for t in fig.data] == [True, True, False, False]
    assert fig.data[0].x.tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]  # each second at its centre
    assert len(fig.layout.shapes) == 2 * (2 + 1)  # per panel: two segments and the threshold line
    table = dashboard.segments_table({"LRCN": result})
    assert table.values.tolist() == [["LRCN", 0.0, 2.0, "A", 0.85], ["LRCN", 2.0, 4.2, "B", 0.7]]


def test_the_timeline_at_step_resolution_shades_none_of_the_known_actions():
    steps = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    result = {"duration_s": 2.8, "step_s": 0.5,
              "per_second": {"t": [0, 1, 2], "classes": ["A", "B"], "probs": [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]},
              "per_step": {"t": steps, "classes": ["A", "B"], "unknown": [0, 0, 1, 1, 0, 0],
                           "probs": [[0.9, 0.1], [0.8, 0.2], [0.45, 0.55], [0.4, 0.6], [0.2, 0.8], [0.1, 0.9]]},
              "segments": [{"start_s": 0, "end_s": 1.0, "label": "A", "score": 0.85},
                           {"start_s": 1.0, "end_s": 2.0, "label": UNCERTAIN, "score": 0.58},
                           {"start_s": 2.0, "end_s": 2.8, "label": "B", "score": 0.85}]}
    fig = dashboard.timeline_figure({"LRCN": result})
    assert fig.data[0].x.tolist() == [0.25, 0.75, 1.25, 1.75, 2.25, 2.75]  # each step at its centre
    assert fig.data[1].y.tolist()[2] == 0.55
    unknown = [s for s in fig.layout.shapes if s.fillcolor == dashboard.UNKNOWN_COLOR]
    assert [(s.x0, s.x1) for s in unknown] == [(1.0, 2.0)] and unknown[0].opacity > fig.layout.shapes[0].opacity
    assert [a.text for a in fig.layout.annotations] == ["LRCN", "A", "none of the known actions", "B"]
    assert fig.layout.xaxis.range == (0, 2.8)


def test_timeline_scores_before_and_after_and_a_file_without_decoder(tmp_path):
    scores = {"montages": 30, "segments": 180, "predicted": 170, "precision": 0.95, "recall": 0.9, "f1": 0.924,
              "mean_boundary_error_s": 0.61, "short_pieces": 27, "short_recall": 0.8148}
    before = {"timeline": {"window_s": 7.24, "hop_s": 1.0, "smoothing": "runs under 2 s merged into a neighbour"},
              **scores, "f1": 0.4438, "mean_boundary_error_s": 1.995}
    after = {"timeline": {"window_s": 2.0, "hop_s": 0.5, "penalty": 2.0,
                          "decoder": "Viterbi over 0.5 s steps, switching penalty 2"}, **scores, "before": before}
    for name, record in (("lrcn", after), ("convlstm", before)):  # convlstm: a file whose settings name no decoder
        write_model_dir(tmp_path / name, name)
        (tmp_path / name / "timeline.json").write_text(json.dumps(record))
    records = dashboard.load_records(("lrcn", "convlstm"), root=tmp_path)
    assert all(r.complete for r in records), [r.problems for r in records]
    table = dashboard.timeline_table(records)
    assert table[["Model", "Timeline", "Window / hop (s)", "Segment F1 @ IoU 0.5"]].values.tolist() == [
        ["LRCN", "before", "7.24 / 1", "0.444"], ["LRCN", "after", "2 / 0.5", "0.924"],
        ["ConvLSTM", "before", "7.24 / 1", "0.444"]]
    assert table["Segments from"].tolist()[:2] == ["runs under 2 s merged into a neighbour",
                                                   "Viterbi over 0.5 s steps, switching penalty 2"]
    assert table["Mean boundary error"].tolist() == ["2.00 s", "0.61 s", "2.00 s"]
    assert table["2–3 s pieces found"].tolist()[1] == "81% of 27"


def test_the_app_builds_without_any_model(tmp_path):
    import gradio as gr

    import app

    missing = {"LRCN": "No model named or found at 'lrcn'.", "ConvLSTM": "No model named or found at 'convlstm'."}
    demo = app.build_app({}, missing, dashboard.load_records(root=tmp_path))
    text = json.dumps(demo.get_config_file())
    assert "LRCN is not available" in text and "Some stored results are missing" in text
    assert "No training history stored yet." in text
    with pytest.raises(gr.Error, match="The LRCN model is not available on this server"):
        app.recognize({}, missing, str(next((REPO / "examples").glob("v_Surfing_*.mp4"))), "", "LRCN", None, None,
                      lambda *a, **k: None)


def test_examples_are_short_h264_clips_one_per_class_from_test_groups():
    if not (REPO / "models" / "lrcn" / "config.json").is_file():
        need(REPO / "models" / "lrcn" / "config.json")  # fails in CI, skips elsewhere
    config = ModelConfig.load(REPO / "models" / "lrcn")
    clips = sorted((REPO / "examples").glob("*.mp4"))
    assert sorted(p.stem.split("_")[1] for p in clips) == sorted(config.classes)
    assert sum(p.stat().st_size for p in clips) < 2_000_000
    test_groups = set(config.split["test"])
    for p in clips:
        _, cls, group, _ = p.stem.split("_")
        assert f"{cls}/{group}" in test_groups, f"{p.name} is not from a test group"
        info = probe(p)
        assert 1.5 <= info.duration_s <= 4.1, (p.name, info.duration_s)


def test_the_model_card_in_docs_is_the_about_tabs_text():
    """docs/model-card.md is what `python -m har docs` writes from the stored models: the About tab's words."""
    from har.reports import modelcard

    assert modelcard.DOC.read_text() == modelcard.markdown(dashboard.load_records()), \
        "docs/model-card.md is stale: run `python -m har docs`"
    before, after = modelcard.sections(dashboard.load_records())
    assert before in modelcard.DOC.read_text() and after in modelcard.DOC.read_text()
    assert "| Class | train | validation | test |" in modelcard.DOC.read_text()

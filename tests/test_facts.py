"""Every fact shown to a reader against the stored file that records it.

README's results, the model card (``docs/model-card.md``, the About tab's text) and the Compare tab's tables are
parsed here and each number is compared with ``config.json``, ``metrics.json``, ``openset.json``,
``timeline.json`` or ``benchmark.json`` read directly, not through the code that wrote the pages.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO

from har.reports import dashboard, modelcard
from har.train.recipe import retrain_command

MODELS = REPO / "models"
MAIN = {"LRCN": "lrcn", "ConvLSTM": "convlstm"}
ROWS = {**MAIN, "LRCN (from scratch)": "lrcn_scratch", "ConvLSTM (from scratch)": "convlstm_scratch",
        "LRCN (tutorial)": "lrcn_tutorial", "ConvLSTM (tutorial)": "convlstm_tutorial"}
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# Sentences that stated what the shipped models no longer do, and numbers no file holds.
STALE = ("first four stages", "7.24-second", "4.3 / 12.5", "a 7-second window", "64x64 pixels",
         "--arch lrcn --preset imagenet", "--arch lrcn --data")


def stored(name: str, file: str) -> dict:
    return json.loads((MODELS / name / file).read_text())


def pct(text: str) -> float:
    return float(text.replace("%", "").strip()) / 100


@pytest.fixture(scope="module")
def readme() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("<!-- results -->", 1)[1].split("<!-- /results -->", 1)[0]


@pytest.fixture(scope="module")
def card() -> str:
    return modelcard.DOC.read_text()


def _prose(text: str) -> str:
    return " ".join(text.split())


def test_the_readme_table_is_what_the_files_say(readme):
    rows = [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in readme.splitlines()
            if line.startswith("| ") and not line.startswith("| model") and "---" not in line]
    assert sorted(r[0] for r in rows) == sorted(ROWS), "one row per stored model directory"
    for label, accuracy, f1, clips, size, speed in rows:
        name = ROWS[label]
        metrics, bench = stored(name, "metrics.json"), stored(name, "benchmark.json")
        assert pct(accuracy) == pytest.approx(metrics["accuracy"], abs=0.0005), label
        assert float(f1) == pytest.approx(metrics["macro_f1"], abs=0.0005), label
        assert int(clips) == metrics["clips"], label
        assert float(size.removesuffix(" MB")) == pytest.approx(bench["dir_bytes"] / 1e6, abs=0.05), label
        onnx, keras = map(float, re.fullmatch(r"([\d.]+) ms \(([\d.]+) ms\)", speed).groups())
        assert onnx == pytest.approx(bench["onnx_forward_ms"], rel=0.02, abs=0.5), label
        assert keras == pytest.approx(bench["forward_ms"], rel=0.02, abs=0.5), label
        assert bench["served"] == "onnx"  # the column says the first figure is what the app serves


def test_the_readme_prose_is_what_the_files_say(readme):
    text = _prose(readme)
    config = {n: stored(n, "config.json") for n in MAIN.values()}
    frames, size = re.search(r"each of (\d+) frames \((\d+)x(\d+) px\)", text).groups()[:2]
    assert all((c["frames"], c["size"]) == (int(frames), int(size)) for c in config.values())
    blocks = int(re.search(r"all (\d+) MBConv blocks of EfficientNet-Lite0", text).group(1))
    assert all(c["encoder"] == "lite0" and c["encoder_blocks"] == blocks for c in config.values())
    groups, clips = map(int, re.search(r"Scored on (\d+) UCF101 groups \((\d+) clips\)", text).groups())
    assert groups == len(config["lrcn"]["split"]["test"]) and clips == stored("lrcn", "metrics.json")["clips"]
    cores = int(re.search(r"on a (\d+)-core CPU", text).group(1))
    assert all(stored(n, "benchmark.json")["cpus"] == cores for n in MAIN.values())
    _check_window(text)
    _check_rejections(text)
    flagged = [pct(p) for p in re.search(r"([\d.]+ %) / ([\d.]+ %) of the seconds of", text).groups()]
    wild = [stored(n, "openset.json")["operating_point"]["wild_seconds_flagged"] for n in MAIN.values()]
    assert flagged == pytest.approx(wild, abs=0.005)
    videos = int(re.search(r"of the seconds of (\d+) web videos", text).group(1))
    assert all(len(stored(n, "openset.json")["wild"]["videos"]) == videos for n in MAIN.values())
    said = re.search(r"([\d.]+ %) / ([\d.]+ %) of clips of other actions it never learned from \(LRCN, ConvLSTM; "
                     r"each of (\d+) other actions left out in turn\)", text).groups()
    for i, name in enumerate(MAIN.values()):
        others = stored(name, "openset.json")["other_actions"]
        assert pct(said[i]) == pytest.approx(others["mean"]["flagged"], abs=0.005)
        assert int(said[2]) == len(others["classes"])
    f1 = [float(x) for x in re.search(r"segment F1 ([\d.]+) / ([\d.]+) for LRCN / ConvLSTM", text).groups()]
    error = [float(x) for x in re.search(r"boundaries within ([\d.]+) / ([\d.]+) s", text).groups()]
    for i, name in enumerate(MAIN.values()):
        timeline = stored(name, "timeline.json")
        assert f1[i] == pytest.approx(timeline["f1"], abs=0.005)
        assert error[i] == pytest.approx(timeline["mean_boundary_error_s"], abs=0.005)
    _check_threshold(text)
    _check_retrain(readme)


def _check_window(text: str) -> None:
    window, hop = map(float, re.search(r"slides? a ([\d.]+)-second window every ([\d.]+) s", text).groups())
    for name in MAIN.values():
        measured = stored(name, "timeline.json")["timeline"]
        assert (measured["window_s"], measured["hop_s"]) == (window, hop), name


def _check_rejections(text: str) -> None:
    said = dict(re.findall(r"the (LRCN|ConvLSTM) turned away ([\d.]+ %)", text))
    assert sorted(said) == sorted(MAIN)
    for label, rate in said.items():
        assert pct(rate) == pytest.approx(stored(MAIN[label], "openset.json")["operating_point"]["known_rejected"],
                                          abs=0.0006), label  # half the last digit shown


def _check_threshold(text: str) -> None:
    under = pct(re.search(r"top probability is under ([\d.]+ %)", text).group(1))
    assert all(stored(n, "config.json")["uncertain_below"] == under for n in MAIN.values())


def _check_retrain(text: str) -> None:
    block = re.search(r"```bash\n(python -m har train .*?)\n```", text, re.S).group(1)
    assert block.splitlines() == [retrain_command(MODELS / n) for n in MAIN.values()]


def test_the_model_card_is_what_the_files_say(card):
    text = _prose(card)
    config = {n: stored(n, "config.json") for n in MAIN.values()}
    lrcn = config["lrcn"]
    classes = re.search(r"name which of (\w+) actions a video shows: \*\*(.*?)\*\*", text).groups()
    assert WORDS.index(classes[0]) == len(lrcn["classes"]) and classes[1].split(", ") == lrcn["classes"]
    frames, side, side2 = map(int, re.search(r"read (\d+) RGB frames of (\d+)x(\d+) pixels", text).groups())
    assert all((c["frames"], c["size"], c["size"]) == (frames, side, side2) for c in config.values())
    blocks = int(re.search(r"all (\d+) MBConv blocks of EfficientNet-Lite0", text).group(1))
    assert all(c["encoder"] == "lite0" and c["encoder_blocks"] == blocks for c in config.values())
    _check_window(text)
    _check_rejections(text)
    keep = pct(re.search(r"threshold is set to keep ([\d.]+ %) of known clips", text).group(1))
    assert all(c["openset"]["keep"] == keep for c in config.values())
    assert f"{frames} frames per window" in text and f"{side}x{side} pixels" in text
    _check_threshold(text.replace("best probability is under", "top probability is under"))
    train, val, test = map(int, re.search(r"(\d+) groups train, (\d+) validate .*? and (\d+) test", text).groups())
    per_class = len(lrcn["classes"])
    assert [train, val, test] == [len(lrcn["split"][s]) // per_class for s in ("train", "validation", "test")]
    _check_retrain(card)


def test_the_model_cards_split_table_is_the_config_split(card):
    split = stored("lrcn", "config.json")["split"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in card.splitlines()
            if line.startswith("| ") and not line.startswith("| Class")]
    assert len(rows) == len(stored("lrcn", "config.json")["classes"])
    for cls, *groups in rows:
        for part, shown in zip(("train", "validation", "test"), groups, strict=True):
            assert shown.split() == sorted(g.split("/")[1] for g in split[part] if g.startswith(f"{cls}/"))


def test_the_about_tab_shows_the_card(card):
    before, after = modelcard.sections(dashboard.load_records())
    assert before in card and after in card


def test_the_compare_tabs_tables_are_what_the_files_say():
    records = dashboard.load_records()
    summary = dashboard.summary_table(records).set_index("Model")
    for label, name in ROWS.items():
        metrics, bench = stored(name, "metrics.json"), stored(name, "benchmark.json")
        row = summary.loc[label]
        assert float(row["Test accuracy"]) == pytest.approx(metrics["accuracy"], abs=0.0005)
        assert float(row["Macro-F1"]) == pytest.approx(metrics["macro_f1"], abs=0.0005)
        keras, onnx = map(float, re.search(r"TensorFlow ([\d.]+), ONNX Runtime ([\d.]+)",
                                           row["Forward pass, ms/clip"]).groups())
        assert (keras, onnx) == pytest.approx((bench["forward_ms"], bench["onnx_forward_ms"]), abs=0.05)
        assert int(row["Parameters"].replace(",", "")) == stored(name, "config.json")["params"]
    main = [r for r in records if r.name in MAIN.values()]
    timelines = dashboard.timeline_table(main)
    after = timelines[timelines["Timeline"] == "after"].set_index("Model")
    for label, name in MAIN.items():
        measured = stored(name, "timeline.json")
        window, hop = map(float, after.loc[label, "Window / hop (s)"].split(" / "))
        assert (window, hop) == (measured["timeline"]["window_s"], measured["timeline"]["hop_s"])
        assert float(after.loc[label, "Segment F1 @ IoU 0.5"]) == pytest.approx(measured["f1"], abs=0.0005)
    from har.openset import report as openset_report

    table = openset_report.openset_table(openset_report.load_reports(list(MAIN.values()), MODELS),
                                         dashboard.DISPLAY).set_index("model")
    for label, name in MAIN.items():
        measured = stored(name, "openset.json")
        op, row = measured["operating_point"], table.loc[label]
        assert pct(row["known test clips rejected"]) == pytest.approx(op["known_rejected"], abs=0.0006)
        assert pct(row["seconds of web videos flagged"]) == pytest.approx(op["wild_seconds_flagged"], abs=0.006)
        assert float(row["web-video windows told apart (AUROC)"].split()[0]) == pytest.approx(
            measured["wild"]["auroc"], abs=0.006)
        others = measured["other_actions"]["mean"]
        assert pct(row["unseen other actions flagged"]) == pytest.approx(others["flagged"], abs=0.006)
        assert float(row["unseen other actions told apart (AUROC)"]) == pytest.approx(others["auroc"], abs=0.006)
    videos = len(stored("lrcn", "openset.json")["wild"]["videos"])
    assert f"seconds of {videos} web videos" in openset_report.openset_caption(
        openset_report.load_reports(list(MAIN.values()), MODELS))
    montage = stored("lrcn", "timeline.json")["montage_set"]
    low, high = montage["piece_s"]
    assert f"{montage['pieces']} pieces of {low:g}–{high:g} s" in dashboard.timeline_caption(main)


def test_no_stale_fact_remains_in_what_readers_see(card):
    pages = {"README.md": (REPO / "README.md").read_text(), "model card": card,
             **{f"docs/{p.name}": p.read_text() for p in (REPO / "docs").glob("*.md")}}
    for page, text in pages.items():
        flat = _prose(text)
        for stale in STALE:
            assert stale not in flat, f"{page} still says {stale!r}"


def test_a_config_json_with_the_old_timeline_keys_still_loads(tmp_path):
    from har.config import ModelConfig
    from har.serve.timeline import settings

    raw = stored("lrcn_scratch", "config.json")
    raw["window_s"], raw["hop_s"] = raw.pop("whole_clip_window_s"), raw.pop("whole_clip_hop_s")
    (tmp_path / "config.json").write_text(json.dumps(raw))
    config = ModelConfig.load(tmp_path)
    assert (config.whole_clip_window_s, config.whole_clip_hop_s) == (raw["window_s"], raw["hop_s"])
    assert config == ModelConfig.load(MODELS / "lrcn_scratch")
    assert settings(config) == (raw["window_s"], raw["hop_s"])  # trained on whole clips: its own window
    assert not hasattr(config, "window_s")  # no field a page could print for a timeline that does not use it


def test_every_page_retrains_a_model_directory_with_its_own_recipe(card):
    """A page that trains into a model directory prints the one command of har.train.recipe, not options that
    would train another model into it."""
    pages = {"README.md": (REPO / "README.md").read_text(), "model card": card,
             **{f"docs/{p.name}": p.read_text() for p in (REPO / "docs").glob("*.md")}}
    expected = {retrain_command(d) for d in MODELS.iterdir() if (d / "config.json").is_file()}
    seen = set()
    for page, text in pages.items():
        for command in re.findall(r"python -m har train [^\n`#]*", text):
            command = command.strip()
            if "models/" in command:
                assert command in expected, f"{page}: {command!r} is not a model directory's retrain command"
                seen.add(command)
    assert {retrain_command(MODELS / n) for n in MAIN.values()} <= seen


def test_the_notebook_and_the_archive_link_to_what_exists():
    for page in [*(REPO / "docs" / "notebook").glob("*.md"), REPO / "tools" / "archive" / "README.md"]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).resolve().exists(), f"{page.name}: {target}"
    archived = {p.name for p in (REPO / "tools" / "archive").glob("*.py")}
    assert archived and all(f"`{name}`" in (REPO / "tools" / "archive" / "README.md").read_text()
                            for name in archived), "each archived script has its line"


def test_the_open_set_page_shows_what_the_files_say():
    """docs/openset.md's measured part is what `python -m har docs` writes from each model's openset.json."""
    from har.openset.report import load_reports
    from har.reports import openset_page

    text = openset_page.DOC.read_text()
    reports = load_reports(list(MAIN.values()), MODELS)
    body = openset_page.section(reports, {name: label for label, name in MAIN.items()})
    assert text == openset_page.with_section(text, body), "docs/openset.md is stale: run `python -m har docs`"
    for name in MAIN.values():
        others = reports[name]["other_actions"]
        for row in others["per_class"]:
            assert f"| {row['left_out']} | {row['clips']} (" in text and f"{row['auroc']:.3f}" in text
        assert f"**{others['mean']['auroc']:.3f}**" in text

"""Teaching new actions (har.teach): from a few real clips of two other actions, in the library, the command line and
the app's Teach tab. One taught model is shared by the tests (session-scoped); the app is the suite's app_server."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, need, run_cli
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from har.errors import HarError

pytestmark = pytest.mark.slow

OTHER = REPO.parent / "shared" / "data" / "other-actions"
# Examples from two groups of each action; the held-out clips are of a third group, never shown.
TAUGHT = {"Biking": ["Biking/v_Biking_g07_c05.mp4", "Biking/v_Biking_g07_c06.mp4", "Biking/v_Biking_g16_c01.mp4",
                     "Biking/v_Biking_g16_c02.mp4"],
          "Billiards": ["Billiards/v_Billiards_g06_c01.mp4", "Billiards/v_Billiards_g06_c02.mp4",
                        "Billiards/v_Billiards_g16_c01.mp4"]}
HELD_OUT = {"Biking": "Biking/v_Biking_g21_c05.mp4", "Billiards": "Billiards/v_Billiards_g21_c04.mp4"}
KNOWN = ("Archery", REPO / "examples" / "v_Archery_g17_c04.mp4")  # a test-group clip of a base class


@pytest.fixture(scope="session")
def other() -> Path:
    return need(OTHER)


@pytest.fixture(scope="session")
def lrcn():
    from har import Recognizer

    return Recognizer("lrcn", runtime="auto")


@pytest.fixture(scope="session")
def taught(other, lrcn, tmp_path_factory):
    from har import teach

    return teach(lrcn, {name: [other / c for c in clips] for name, clips in TAUGHT.items()},
                 tmp_path_factory.mktemp("taught") / "lrcn-taught")


def test_taught_actions_are_recognized_on_new_groups_and_a_known_clip_stays_right(taught, other):
    for name, clip in HELD_OUT.items():
        assert taught.classify(other / clip).label == name, clip
    assert taught.classify(KNOWN[1]).label == KNOWN[0]
    assert taught.config.classes[:6] == tuple(json.loads((REPO / "models/lrcn/config.json").read_text())["classes"])
    assert set(taught.config.classes[6:]) == set(TAUGHT)


def test_the_taught_config_says_where_it_comes_from(taught):
    from har.serve.export import keras_digest
    from har.teaching.examples import file_digest

    record = taught.config.taught
    assert record["base"] == "lrcn" and record["base_sha256"] == keras_digest(REPO / "models" / "lrcn")
    assert sorted(record["classes"]) == sorted(TAUGHT) and record["method"]
    given = {(other_clip.split("/")[1], name) for name, clips in TAUGHT.items() for other_clip in clips}
    assert {(e["name"], e["action"]) for e in record["examples"]} == given
    for e in record["examples"]:
        assert e["sha256"] == file_digest(OTHER / e["action"] / e["name"])
    # the open set knows the taught actions: its bank holds the examples' views, its threshold is the base's
    base = json.loads((REPO / "models/lrcn/config.json").read_text())["openset"]
    assert taught.familiarity is not None and taught.familiarity.threshold == pytest.approx(base["threshold"])
    assert len(taught.familiarity.bank) > base["bank"]


def test_the_taught_directory_serves_every_command(taught, other, tmp_path):
    model = str(taught.directory)
    clip = other / HELD_OUT["Biking"]
    done = run_cli("predict", str(clip), "--model", model, "--timeline", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["label"] == "Biking" and answer["segments"], answer
    data = tmp_path / "data"  # a subset of the model's classes: two taught, one base
    for name, rel in [*HELD_OUT.items(), (KNOWN[0], KNOWN[1])]:
        (data / name).mkdir(parents=True)
        (data / name / Path(rel).name).symlink_to(other / rel if name in TAUGHT else rel)
    from har.evaluation.evaluate import evaluate_dir  # what `python -m har evaluate` runs (in-process: faster)

    assert evaluate_dir(model, data)["accuracy"] == 1.0
    done = run_cli("batch", str(data), "--out", str(tmp_path / "batch"), "--model", model)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "batch" / "results.jsonl").read_text().splitlines()]
    assert sorted((r["expected"], r["label"]) for r in rows) == sorted((n, n) for n in (*HELD_OUT, KNOWN[0]))


def test_bad_examples_are_named_and_nothing_is_written(lrcn, other, tmp_path):
    from har import teach

    clip = other / TAUGHT["Biking"][0]
    with pytest.raises(HarError, match="'surfing' is already a class of the model"):
        teach(lrcn, {"surfing": [clip]}, tmp_path / "a")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    with pytest.raises(HarError, match="Example 'broken.mp4' of 'Juggling' cannot be used"):
        teach(lrcn, {"Juggling": [clip, broken]}, tmp_path / "b")
    with pytest.raises(HarError, match="one clip cannot show both 'Cycling' and 'Biking'"):
        teach(lrcn, {"Cycling": [clip], "Biking": [clip]}, tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_the_teach_tab_teaches_this_visitor_only(app_server, other, tmp_path):
    mine = Client(app_server.url, verbose=False, download_files=str(tmp_path / "mine"))
    theirs = Client(app_server.url, verbose=False, download_files=str(tmp_path / "theirs"))
    with pytest.raises(AppError, match="Give 3 to 10 example clips"):
        mine.predict(name="Biking", files=[handle_file(other / TAUGHT["Biking"][0])], api_name="/teach")
    with pytest.raises(AppError, match="already a class"):
        mine.predict(name="Surfing", files=[handle_file(other / c) for c in TAUGHT["Biking"]], api_name="/teach")
    message, archive, choice, *_ = mine.predict(name="Biking", model="LRCN", api_name="/teach",
                                                files=[handle_file(other / c) for c in TAUGHT["Biking"]])
    assert choice == "LRCN + Biking" and "7 actions" in message
    with zipfile.ZipFile(archive) as z:
        config = json.loads(z.read("model/config.json"))
    assert config["classes"][-1] == "Biking" and config["taught"]["base"] == "lrcn"
    top, *_ = mine.predict(video=handle_file(other / HELD_OUT["Biking"]), model=choice, api_name="/recognize")
    assert top["label"] == "Biking"
    with pytest.raises(AppError, match="'LRCN \\+ Biking'.* is not in the list of choices"):  # another session
        theirs.predict(video=handle_file(other / HELD_OUT["Biking"]), model=choice, api_name="/recognize")
    table, _, _ = mine.predict(files=[handle_file(other / HELD_OUT["Biking"])], model=choice, api_name="/test_many")
    assert table["data"][0][3] == "Biking", table


def test_the_dashboard_draws_the_stored_few_example_results():
    from har.reports import dashboard, fewshot

    results = fewshot.load_results([REPO / "models" / name for name in dashboard.MAIN])
    assert results, "benchmarks/bench_teach.py --write stores models/<name>/fewshot.json"
    figure = fewshot.fewshot_figure(results, dashboard.DISPLAY, dashboard.MODEL_COLORS)
    for name, r in results.items():
        rows = r["other_actions"]["rows"]
        line = next(t for t in figure.data if t.name == f"{dashboard.DISPLAY[name]}: other actions")
        assert list(line.y) == [row["new_accuracy"] for row in rows]
        assert [str(row["examples"]) for row in rows] == ["1", "2", "3", "5", "all"]
        assert set(r["other_actions"]["groups"]) == set(r["other_actions"]["classes"])  # which were used, recorded
    caption = fewshot.fewshot_caption(results)
    assert f"on {next(iter(results.values()))['other_actions']['scored_clips']} clips of other groups" in caption


def test_the_fit_keeps_the_base_classes_and_learns_a_class_taught_back():
    """On the LRCN's stored training views (teach.npz): PlayingPiano dropped from the base layer and taught back from
    5 of its clips; the other classes' views keep the base layer's answers and its other clips are found."""
    import numpy as np

    from har.modeldir import load_model
    from har.serve.runtime import load_tensorflow
    from har.teaching.basedata import TeachData
    from har.teaching.classifier import fit
    from har.teaching.embedding import PROBS

    load_tensorflow()
    network, config = load_model(REPO / "models" / "lrcn")
    kernel, bias = network.get_layer(PROBS).get_weights()
    data = TeachData.load(REPO / "models" / "lrcn")
    c = config.classes.index("PlayingPiano")
    keep = [k for k in range(len(config.classes)) if k != c]
    x, y = data.inputs()
    views = data.embedding.shape[1]
    mask = y != c
    remap = np.array([keep.index(v) if v != c else -1 for v in range(len(config.classes))])
    clips = np.where(data.labels == c)[0]
    examples, others = clips[:5], clips[5:]
    per_clip = np.concatenate([data.embedding, data.descriptor], axis=2)
    xs = per_clip[examples].reshape(-1, x.shape[1])
    layer = fit(np.concatenate([x[mask], xs]), np.concatenate([remap[y[mask]], np.full(len(xs), len(keep))]),
                len(config.classes), kernel[:, keep], bias[keep], x[mask], data.embedding.shape[2])
    dim = data.embedding.shape[2]
    before = (x[mask, :dim] @ kernel[:, keep] + bias[keep]).argmax(axis=1)
    after = layer.predict(x[mask])
    assert (after == before).mean() >= 0.98, (after == before).mean()
    found = layer.predict(per_clip[others].reshape(-1, x.shape[1])) == len(keep)
    assert found.mean() >= 0.8, (found.mean(), len(others) * views)

"""The app end to end: ``python app.py`` launched once (``app_server`` in conftest.py), driven through gradio_client
as any API user would drive it: keyword parameters, files through ``handle_file``, errors as ``AppError`` carrying
the library's message. Models: the shipped ``models/`` (or ``$HAR_MODELS_DIR``)."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import re
import shutil
import threading
import time

import cv2
import pytest
from conftest import REPO, unsure_clip
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from har.errors import VideoError
from har.media.video import probe

pytestmark = pytest.mark.slow

# A clip of a test group (never seen in training or model selection) that both shipped models get right.
CLIP = ("Surfing", "Surfing/v_Surfing_g23_c02.mp4")
BOTH = "Both, side by side"


@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def link_server(ucf, tmp_path_factory):
    """A local HTTP server holding one shared clip: ``(base url, class, file name)``."""
    root = tmp_path_factory.mktemp("www")
    label, rel = CLIP
    shutil.copy(ucf / rel, root / "clip.mp4")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", label
    httpd.shutdown()
    httpd.server_close()


def confidences(label_output: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label_output["confidences"]}


def test_ready_with_its_public_endpoints(app_server, client):
    # Start-up time is a speed goal (15 s here): measured by benchmarks/load_app.py, not asserted on a shared machine.
    # What start-up must do before the first answer: both models loaded and warmed up, on a runtime it names.
    log = app_server.log.read_text()
    for name in ("LRCN", "ConvLSTM"):
        assert re.search(rf"{name} loaded and warmed up in [\d.]+ s \((onnx|keras)\)", log), log[-3000:]
    assert "is unavailable" not in log
    api = client.view_api(print_info=False, return_format="dict")
    # UI helpers: callable but undocumented
    assert list(api["named_endpoints"]) == ["/recognize", "/test_many", "/teach"]
    params = {p["parameter_name"]: (p["parameter_has_default"], p["parameter_default"])
              for p in api["named_endpoints"]["/recognize"]["parameters"]}
    assert params["video"] == (True, None)
    assert params["url"] == (True, "")
    assert params["model"] == (True, "LRCN")
    assert params["explain"] == (True, False)  # off by default: plain recognition pays nothing for it


def test_a_shared_clip_is_recognized(client, ucf):
    label, rel = CLIP
    out = client.predict(video=handle_file(ucf / rel), api_name="/recognize")
    top, second, annotated, timeline, segments, notice, result, strip, words = out
    assert strip is None and words == ""  # Explain is off by default: no explanation computed
    assert top["label"] == label
    conf = confidences(top)
    assert len(conf) == 6 and abs(sum(conf.values()) - 1) < 0.01 and max(conf, key=conf.get) == label
    assert second in (None, {})  # one model asked: the second answer stays empty
    assert notice == ""  # confident: no "not sure" notice
    assert segments["headers"] == ["Model", "Start (s)", "End (s)", "Action", "Confidence"]
    assert [row[3] for row in segments["data"]] == [label]
    assert timeline["type"] == "plotly" and label in timeline["plot"]
    # the annotated copy: H.264 in MP4, every frame of the source
    cap = cv2.VideoCapture(annotated)
    assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in (b"avc1", b"h264", b"H264")
    cap.release()
    assert probe(annotated).frame_count == probe(ucf / rel).frame_count
    data = json.loads(open(result).read())
    assert data["source"] == (ucf / rel).name and list(data["models"]) == ["LRCN"]
    lrcn = data["models"]["LRCN"]
    assert lrcn["label"] == label and lrcn["top"][0]["label"] == label and not lrcn["uncertain"]
    assert set(lrcn["per_second"]) == {"t", "classes", "probs"} and "annotated" not in lrcn


def test_both_models_answer_side_by_side(client, ucf):
    label, rel = CLIP
    top, second, _, timeline, segments, _, result, _, _ = client.predict(video=handle_file(ucf / rel), model=BOTH,
                                                                          api_name="/recognize")
    assert top["label"] == label  # LRCN first, as alone
    conf = confidences(second)
    assert len(conf) == 6 and abs(sum(conf.values()) - 1) < 0.01 and conf != confidences(top)
    assert {row[0] for row in segments["data"]} == {"LRCN", "ConvLSTM"}
    assert '"ConvLSTM"' in timeline["plot"]  # a second panel, titled
    assert list(json.loads(open(result).read())["models"]) == ["LRCN", "ConvLSTM"]


def test_a_clip_of_none_of_the_actions_gets_the_open_set_notice(client, tmp_path):
    _, _, _, _, _, notice, result, *_ = client.predict(video=handle_file(unsure_clip(tmp_path)), api_name="/recognize")
    lrcn = json.loads(open(result).read())["models"]["LRCN"]
    assert lrcn["uncertain"] and lrcn["label"] == "none of the known actions", lrcn["top"]
    assert lrcn["open_set"] == "familiarity" and lrcn["familiarity"] < lrcn["familiar_above"]
    # what it means in words, with the closest action, and no score or threshold
    assert notice == (f"**This video doesn't look like any of the actions LRCN knows**; closest: "
                      f"{lrcn['top'][0]['label']}."), notice
    assert not re.search(r"\d", notice), notice


def test_a_broken_file_gives_the_library_message(client, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # an MP4 header, then noise
    with pytest.raises(VideoError) as lib:
        probe(broken)
    with pytest.raises(AppError) as app:
        client.predict(video=handle_file(broken), api_name="/recognize")
    assert str(lib.value) in str(app.value)
    assert "Traceback" not in str(app.value)


def test_inputs_are_checked_with_messages(client):
    with pytest.raises(AppError, match="Upload or record a video, or paste a link, first"):
        client.predict(api_name="/recognize")
    with pytest.raises(AppError, match="Only video files can be analysed .* 'README.md' is not one"):
        client.predict(video=handle_file(REPO / "README.md"), api_name="/recognize")
    with pytest.raises(AppError, match="not an allowed host on this server"):
        client.predict(url="https://example.com/clip.mp4", api_name="/recognize")
    with pytest.raises(AppError, match="'GRU'.* is not in the list of choices"):  # Gradio's own check
        client.predict(url="https://example.com/clip.mp4", model="GRU", api_name="/recognize")


def test_a_link_is_fetched_recognized_and_its_download_removed(client, link_server, app_server):
    base, label = link_server
    top, *_, result, _, _ = client.predict(url=base + "clip.mp4", api_name="/recognize")
    assert top["label"] == label
    assert json.loads(open(result).read())["source"] == base + "clip.mp4"
    # a section of the link (ffmpeg cuts it): still the same action
    top, _, annotated, *_ = client.predict(url=base + "clip.mp4", start_s=1, end_s=3, api_name="/recognize")
    assert top["label"] == label
    assert probe(annotated).duration_s == pytest.approx(2.0, abs=0.3)
    leftovers = [p.name for p in app_server.tmp.iterdir() if p.name.startswith("har-")]
    assert leftovers == [], f"temporary files left after the requests: {leftovers}"


def test_explain_shows_each_models_frames_and_regions(client, ucf):
    label, rel = CLIP
    *_, notice, result, strip, words = client.predict(video=handle_file(ucf / rel), model=BOTH, explain=True,
                                                      api_name="/recognize")
    image = cv2.imread(strip)
    assert image is not None and image.shape[1] == 20 * 96  # a tile per sampled frame
    assert image.shape[0] > 2 * 96  # a row per model
    lines = words.split("\n\n")
    assert len(lines) == 2 and lines[0].startswith("LRCN (") and lines[1].startswith("ConvLSTM (")
    assert all(" of the picture." in w or "no single frame" in w for w in lines)


# ---- Test many, how much was read, the cache cap --------------------------------------------------------------

EXAMPLES = sorted((REPO / "examples").glob("v_*.mp4"))  # one per class, from test groups, all answered right
WILD = REPO.parent / "shared" / "data" / "wild" / "golf-fitting.mp4"  # 30 s of 720p: about 3 s of decoding


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory):
    """A local HTTP server holding the example clips and a broken file: its base url."""
    root = tmp_path_factory.mktemp("www-batch")
    for p in EXAMPLES:
        shutil.copy(p, root / p.name)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_test_many_fills_its_table_as_results_arrive(client, batch_server, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(EXAMPLES[2].read_bytes()[:30_000])  # HorseRace, 4.0 s; its first 30 kB decode to about 1 s
    label = {p.name: p.stem.split("_")[1] for p in EXAMPLES}
    links = "\n".join(f"{batch_server}{p.name}, {label[p.name]}" for p in EXAMPLES[:3])
    links += f"\n{batch_server}broken.mp4, Surfing\nhttps://example.com/clip.mp4\n\n{EXAMPLES[5].name}, Surfing\n"
    job = client.submit(links=links, files=[handle_file(EXAMPLES[5]), handle_file(cut)], model="LRCN",
                        api_name="/test_many")
    table, summary, csv_path = job.result(timeout=300)
    outputs = job.outputs()
    assert len(outputs) == 1 + 7 + 1  # the empty table, one update per video, the summary
    done = [sum(row[3] != "waiting…" for row in out[0]["data"]) for out in outputs]
    assert done == [0, 1, 2, 3, 4, 5, 6, 7, 7], done  # filled in one row at a time
    assert all(out[2] is None for out in outputs[:-1])  # the CSV comes at the end
    assert table["headers"] == ["#", "Video", "Expected", "Answer", "Confidence", "Right", "Read (s)", "Time (s)",
                                "Notice"]
    rows = {row[1]: row for row in table["data"]}
    for p in EXAMPLES[:3]:
        assert rows[batch_server + p.name][3:6] == [label[p.name], rows[batch_server + p.name][4], "✓"]
    assert rows[EXAMPLES[5].name][2:4] == ["Surfing", "Surfing"]  # the upload got its label from its line
    assert rows[batch_server + "broken.mp4"][3] == "failed"
    assert "looks like an MP4/MOV file but cannot be decoded" in rows[batch_server + "broken.mp4"][8]
    assert rows["https://example.com/clip.mp4"][3] == "refused"
    assert rows["cut.mp4"][8].startswith("Only ") and "could be read" in rows["cut.mp4"][8]
    assert "/tmp" not in json.dumps(table)  # no server path shown
    assert "**7 videos: 5 answered, 1 refused, 1 failed.**" in summary
    assert "Accuracy against the expected labels: 4 of 4 (100.0%)" in summary
    assert "none of the known actions" in summary and "Partly read: #7 cut.mp4" in summary
    with open(csv_path, newline="") as f:
        written = list(csv.DictReader(f))
    assert sorted(int(r["n"]) for r in written) == list(range(1, 8))
    assert {r["input"]: r["status"] for r in written}[batch_server + "broken.mp4"] == "failed"


def test_test_many_checks_its_inputs(client):
    with pytest.raises(AppError, match=r"Paste links \(one per line\) or upload video files first"):
        client.predict(links="\n# nothing\n", api_name="/test_many")
    eleven = "\n".join(f"https://youtu.be/v{i}" for i in range(11))
    with pytest.raises(AppError, match=r"11 videos given; this server tests at most 10 at once \(HAR_MAX_BATCH\)"):
        client.predict(links=eleven, api_name="/test_many")
    with pytest.raises(AppError, match=r"Line 1: the start time 'soon' is not a number of seconds"):
        client.predict(links="https://youtu.be/x, Surfing, soon", api_name="/test_many")
    with pytest.raises(AppError, match=r"Invalid file type\. Please upload a file that is one of these formats"):
        client.predict(files=[handle_file(REPO / "README.md")], api_name="/test_many")


def test_a_batch_holds_up_another_visitor_for_one_item_at_most(client, app_server):
    batch = client.submit(files=[handle_file(WILD) for _ in range(5)], model="LRCN", api_name="/test_many")
    deadline = time.monotonic() + 120
    while not any(sum(r[3] != "waiting…" for r in out[0]["data"]) for out in batch.outputs()):
        assert time.monotonic() < deadline and not batch.done()
        time.sleep(0.1)
    other = Client(app_server.url, verbose=False)
    top, *_ = other.predict(video=handle_file(EXAMPLES[5]), api_name="/recognize")  # during the batch's 2nd item
    rows_done = sum(r[3] != "waiting…" for r in batch.outputs()[-1][0]["data"])
    assert top["label"] == "Surfing"
    assert rows_done <= 3, f"the visitor waited for {rows_done - 1} items of the batch"
    table, summary, _ = batch.result(timeout=300)
    assert "5 videos: 5 answered." in summary


def test_a_truncated_upload_is_answered_with_a_warning(client, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(EXAMPLES[2].read_bytes()[:30_000])
    _, _, _, _, _, notice, result, *_ = client.predict(video=handle_file(cut), api_name="/recognize")
    lrcn = json.loads(open(result).read())["models"]["LRCN"]
    assert lrcn["length_s"] == 4.0 and lrcn["read_s"] < 2.0
    assert notice.startswith("**LRCN read only part of the video**: Only ")
    assert lrcn["read_warning"] in notice and "truncated or damaged" in notice


def test_the_cache_is_capped(client, app_server):
    # A 50 MB upload left from an hour ago (sparse: no real disk): over the 40 MB cap, so the next request sweeps it.
    old = app_server.cache / "0123abcd" / "huge.mp4"
    old.parent.mkdir(parents=True, exist_ok=True)
    with open(old, "wb") as f:
        f.truncate(50_000_000)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    client.predict(video=handle_file(EXAMPLES[0]), api_name="/recognize")
    assert not old.exists() and not old.parent.exists()
    total = sum(p.stat().st_size for p in app_server.cache.rglob("*") if p.is_file())
    assert total <= 40_000_000 + 10_000_000  # the cap, plus this request's own young files


def test_the_visitor_tabs_show_no_repo_path_or_command_and_say_what_the_models_are():
    """What a visitor reads on Recognize, Test many and Compare (labels, hints, texts): no path in the repository,
    script or command line (a link to the docs instead); the model choices say what LRCN and ConvLSTM are."""
    import gradio as gr

    from har.reports import dashboard
    from har.serve.turns import Turns
    from ui.compare import compare_tab
    from ui.recognize import recognize_tab
    from ui.test_many import test_many_tab

    with gr.Blocks() as demo:
        recognize_tab({}, {}, Turns(1))
        test_many_tab({}, {}, Turns(1))
        compare_tab(dashboard.load_records())
    components = demo.get_config_file()["components"]
    texts = [c["props"][key] for c in components for key in ("label", "info", "placeholder")
             if isinstance(c["props"].get(key), str)]
    texts += [c["props"]["value"] for c in components if c["type"] == "markdown" and c["props"].get("value")]
    shown = "\n".join(texts)
    assert "Test up to 10 videos at once" in shown  # the texts were found
    assert not re.search(r"python -m|\bhar (batch|train|explain|docs)\b|benchmarks/|models/|tools/|\w\.py\b", shown), \
        shown
    radios = [c["props"] for c in components if c["type"] == "radio"]
    assert len(radios) == 2 and all("LRCN" in r["info"] and "ConvLSTM" in r["info"] for r in radios)

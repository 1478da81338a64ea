"""The corpus of bad inputs (benchmarks/corpus.py) through every way in: the library, the command line and the app.

Each item must get either a correct answer or its own error, a sentence a user understands: ``HarError`` from
the library, exactly one ``error:`` line and status 1 from ``python -m har predict``, a ``gr.Error`` from the app,
never a traceback; after each, the app still answers the next request, and no temporary file stays behind.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile

import httpx
import numpy as np
import pytest
from conftest import REPO
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from benchmarks.corpus import ITEMS, SOURCE, build, serve
from har import UNCERTAIN, analyze
from har.config import ModelConfig
from har.errors import FetchError, HarError, VideoError
from har.links.fetch import FetchLimits, fetched
from har.media.video import count_frames, probe, sample_clip
from har.serve.backends import ORT_SESSION_FILE

pytestmark = pytest.mark.slow

FILES = [i for i in ITEMS if i.filename]
LINKS = [i for i in ITEMS if i.link]
EXAMPLE = next((REPO / "examples").glob("v_HorseRace_*.mp4"))  # the good request after each item


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    return build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def links(tmp_path_factory):
    """Base URL of a server on 127.0.0.1 with the corpus's misbehaving links (and a clip they point to)."""
    root = tmp_path_factory.mktemp("www")
    shutil.copyfile(SOURCE, root / "clip.mp4")
    with serve(root) as base:
        yield base


@pytest.fixture
def item_env(request, monkeypatch):
    """The item's environment; the length limit at its default otherwise."""
    monkeypatch.delenv("HAR_MAX_VIDEO_SECONDS", raising=False)
    for name, value in request.param.env:
        monkeypatch.setenv(name, value)
    return request.param


def _ids(item) -> str:
    return item.name


# --- the library -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("item_env", [i for i in FILES if not i.app_only], ids=_ids, indirect=True)
def test_library(item_env, corpus_dir, tiny_recognizer, tmp_path):
    item, rec = item_env, tiny_recognizer
    path = corpus_dir / item.filename
    out = tmp_path / "out" / "annotated.mp4"
    if item.error:
        with pytest.raises(HarError, match=item.message()):
            rec.classify(path)
        with pytest.raises(HarError, match=item.message()):
            analyze(path, rec, annotate_to=out)
        if not item.limit:  # the file itself cannot be read: sampling says why as well
            with pytest.raises(VideoError, match=item.message()):
                sample_clip(path)
        assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no half-written copy
        return
    pred = rec.classify(path)
    classes = rec.config.classes
    assert pred.probs.shape == (len(classes),) and pred.probs.min() >= 0 and abs(pred.probs.sum() - 1) < 1e-4
    assert pred.label in (*classes, UNCERTAIN)
    assert pred.partly_read == item.partly_read, (pred.read_s, pred.length_s)  # no false alarm on odd videos
    frames, _ = count_frames(path)
    result = analyze(path, rec, annotate_to=out)[rec.name]
    assert result.clip.partly_read == item.partly_read
    # one decoding pass gives the whole-clip answer of classify (same frames), plus a timeline and a copy
    np.testing.assert_allclose(result.clip.probs, pred.probs, atol=1e-4)
    tl = result.timeline
    assert tl.frame_count == frames and len(tl.seconds) == max(1, math.ceil(tl.duration_s - 1e-6))
    assert tl.segments[0].start_s == 0 and tl.segments[-1].end_s == pytest.approx(tl.duration_s)
    assert [p.name for p in out.parent.iterdir()] == [out.name] and count_frames(out)[0] == frames
    shown = probe(out)
    if item.name == "rotation":  # frames are upright as a player shows them (portrait), and so is the copy
        assert (shown.width, shown.height) == (240, 320)
    assert max(shown.width, shown.height) <= 1280 and min(shown.width, shown.height) <= 720


@pytest.mark.parametrize("item", LINKS, ids=_ids)
def test_library_links(item, links, tmp_path, monkeypatch, connections):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    limits = FetchLimits(allowed_hosts=("127.0.0.1:*",), socket_timeout_s=1, retries=0)
    with pytest.raises(FetchError, match=item.message()):
        with fetched(item.input(tmp_path, links), limits=limits):
            pass
    assert list(tmp_path.iterdir()) == []  # the download directory went with the error
    assert all(a[0] == "127.0.0.1" for a in connections if isinstance(a, tuple)), connections


# --- the command line --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", [i for i in ITEMS if not i.app_only], ids=_ids)
def test_cli(item, corpus_dir, links, tiny_model, cli):
    env = {"HAR_MAX_VIDEO_SECONDS": "600", "HAR_ALLOWED_HOSTS": "127.0.0.1:*", "HAR_FETCH_TIMEOUT_S": "1",
           "HAR_FETCH_RETRIES": "0", **dict(item.env)}
    target = item.input(corpus_dir, links)
    res = cli("predict", target, "--model", str(tiny_model), "--json", env=env)
    assert "Traceback" not in res.stderr, res.stderr
    if item.error:
        assert res.returncode == 1 and res.stdout == "", (res.returncode, res.stdout, res.stderr)
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        assert re.search(item.message(), lines[0]), lines[0]
        return
    warned = [line for line in res.stderr.splitlines() if line.startswith("warning: Only ")]
    assert res.returncode == 0 and res.stderr == "".join(f"{w}\n" for w in warned), res.stderr
    assert len(warned) == item.partly_read  # one line, saying how much could be read
    answer = json.loads(res.stdout.splitlines()[-1])
    classes = ModelConfig.load(tiny_model).classes
    assert answer["input"] == target and len(answer["top"]) == min(5, len(classes))
    assert answer["label"] in (*classes, UNCERTAIN)
    assert abs(sum(s["score"] for s in answer["top"]) - 1) < 0.01  # all classes listed: they sum to 1


# --- the app -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def example_answer(client) -> dict:
    """The app's answer to EXAMPLE before any corpus item: after each item it must still give exactly this."""
    return _answer_is_for(client.predict(video=handle_file(EXAMPLE), api_name="/recognize"), EXAMPLE.name)


@pytest.fixture(scope="module")
def app_log(app_server):
    """The app's log from this module's first request on."""
    start = app_server.log.stat().st_size
    return lambda: app_server.log.read_bytes()[start:].decode(errors="replace")


def _answer_is_for(out: tuple, name: str) -> dict:
    """The LRCN answer of a /recognize output, checked to be a whole answer about the file ``name``."""
    top, _, annotated, _, _, _, result, _, _ = out
    conf = {c["label"]: c["confidence"] for c in top["confidences"]}
    data = json.loads(open(result).read())
    assert data["source"] == name
    lrcn = data["models"]["LRCN"]
    assert len(conf) == len(lrcn["per_second"]["classes"]) and abs(sum(conf.values()) - 1) < 0.01
    assert top["label"] == max(conf, key=conf.get)
    return {"label": top["label"], "confidences": conf, "annotated": annotated}


@pytest.mark.parametrize("item", [i for i in ITEMS if not i.env], ids=_ids)
def test_app(item, corpus_dir, links, client, app_server, app_log, example_answer):
    path = corpus_dir / item.filename if item.filename else None
    kwargs = {"video": handle_file(path)} if path else {"url": item.input(corpus_dir, links)}
    if item.error:
        # AppError: our gr.Error; ValueError: gradio_client refuses an upload over the server's max_file_size
        with pytest.raises((AppError, ValueError), match=item.message()) as err:
            client.predict(**kwargs, api_name="/recognize")
        assert "Traceback" not in str(err.value)
        if item.name == "over-upload-limit":  # a browser or any HTTP client: refused by the server as well
            with open(path, "rb") as f:
                r = httpx.post(app_server.url + "gradio_api/upload", files=[("files", (path.name, f))], timeout=60)
            assert r.status_code == 413 and "File size exceeded maximum allowed size" in r.text, r.text
    else:
        got = _answer_is_for(client.predict(**kwargs, api_name="/recognize"), path.name)
        assert count_frames(got["annotated"])[0] == count_frames(path)[0]
        if item.name == "rotation":
            assert probe(got["annotated"]).height > probe(got["annotated"]).width
    # the app keeps serving: the next visitor gets the right answer
    good = _answer_is_for(client.predict(video=handle_file(EXAMPLE), api_name="/recognize"), EXAMPLE.name)
    assert good["label"] == example_answer["label"]
    assert good["confidences"] == pytest.approx(example_answer["confidences"], abs=2e-3)
    left = [p.name for p in app_server.tmp.iterdir() if p.name != ORT_SESSION_FILE]
    assert left == []  # downloads and temporaries went with each request


def test_app_logged_no_traceback(app_log):
    """Every corpus item was a user's error or an answer: nothing reached the log as a crash of ours."""
    assert "Traceback" not in app_log() and "recognize failed" not in app_log()

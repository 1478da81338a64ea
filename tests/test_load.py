"""Several visitors at once on the launched app (``app_server``): 4 clients, each its own session, sending example
clips, bad files and a long video through ``benchmarks/load_app.py``'s checks. Every request is answered, with its
own answer (the JSON result names the uniquely named upload; a video gets the answer it gets alone, a bad file its
own error), nothing is left in the app's TMPDIR or half-written in its cache, and the server's peak RSS stays under
3 GB. The peak is the server's high-water mark over the whole session, so it includes the earlier app and browser
tests (Explain loads TensorFlow): 1.61 GB in the full suite on 2026-12-02, 0.68 GB with this test alone; 3.8 GB
before the ONNX per-frame half ran its frames 32 at a time. A Hugging Face CPU Space has 16 GB. The full load (8
clients, the queue-overflow probe) is ``python benchmarks/load_app.py``."""

from __future__ import annotations

import pytest

from benchmarks import load_app

pytestmark = pytest.mark.slow


def test_four_clients_at_once_each_get_their_own_answer(app_server, wild, tmp_path):
    jobs = load_app.make_jobs(12, tmp_path, wild=wild)  # 8 examples (every class), 3 bad files, 1 long video
    assert {j.kind for j in jobs} == {"example", "bad", "long"}
    refs = load_app.references(app_server.url, jobs, tmp_path / "downloads")  # each video alone, one at a time
    outcomes = load_app.run_load(app_server.url, jobs, concurrency=4, downloads=tmp_path / "downloads", refs=refs,
                                 timeout=600)
    assert sorted(o.job.id for o in outcomes) == [j.id for j in jobs]  # each answered once, none lost
    wrong = [f"{o.job.file.name}: {o.status}: {o.detail}" for o in outcomes if not o.good]
    assert not wrong, wrong
    assert load_app.leftovers(load_app.App(app_server.url, tmp=app_server.tmp, cache=app_server.cache)) == []
    peak = load_app.RssMonitor(app_server.pid).hwm_kb / 2**20
    assert 0 < peak < 3.0, f"server peak RSS {peak:.2f} GB"

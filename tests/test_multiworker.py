"""``train --strategy multiworker``: two worker processes on 127.0.0.1 train one model together, each told the
cluster through TF_CONFIG, as two machines would be; worker 0 (the chief) writes the model."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from conftest import REPO

from har.config import ModelConfig
from har.evaluation.evaluate import predict_frames
from har.modeldir import load_model
from har.serve.export import DIGEST_KEY, keras_digest

pytestmark = pytest.mark.slow
TIMEOUT_S = 300  # both workers together; one epoch on 5 clips takes well under a minute on two idle cores


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports of 127.0.0.1 that are free now (held open together while chosen, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_together(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Wait for every process; as soon as one fails, or the time is up, kill the others (they would wait for it in
    their next collective). Returns the exit codes (negative: killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    return [p.returncode for p in procs]


def test_two_workers_train_one_model_and_only_worker_0_writes_it(tiny_dataset, tmp_path, no_way_out):
    # The same --out for both, as on a disk both machines share: worker 1 must leave worker 0's model alone.
    # 5 clips per split in batches of 4: split across 2 workers, the last training batch (1 clip) leaves one none.
    out = tmp_path / "model"
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    # 8 frames of 32 px: the cluster's behaviour is checked, not how well the model learns
    args = [sys.executable, "-m", "har", "train", "--arch", "lrcn", "--preset", "default", "--size", "32", "--frames",
            "8", "--no-refit", "--data", str(tiny_dataset), "--out", str(out), "--strategy", "multiworker",
            "--epochs", "1", "--batch-size", "4", "--max-clips", "5"]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": "",  # CPU only
               "TF_CPP_MIN_LOG_LEVEL": "2",
               # onnxruntime 1.31 sends usage telemetry (a DNS query for mobile.events.data.microsoft.com) a few
               # seconds after the chief's export opens a session, unless told not to: no_way_out is here for the
               # workers' own traffic, which must stay on loopback
               "ORT_DISABLE_TELEMETRY": "1"}
        with open(tmp_path / f"worker{i}.out", "w") as stdout, open(tmp_path / f"worker{i}.err", "w") as stderr:
            procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=stdout, stderr=stderr))
    codes = run_together(procs, TIMEOUT_S)
    errs = [(tmp_path / f"worker{i}.err").read_text() for i in range(2)]
    assert codes == [0, 0], f"exit codes {codes} (negative: killed after {TIMEOUT_S} s or after the other failed)\n" + \
        "\n".join(f"--- worker {i} stderr ---\n{e[-3000:]}" for i, e in enumerate(errs))

    # Worker 1 waited for the chief to finish writing: leaving earlier, it would be reported to it as crashed.
    assert "unhealthy" not in errs[0], errs[0][-3000:]
    last = [json.loads((tmp_path / f"worker{i}.out").read_text().splitlines()[-1]) for i in range(2)]
    assert last[1] == {"out": str(out), "chief": False}  # told by TF_CONFIG it is worker 1 of 2
    assert last[0]["epochs"] == 1 and last[0]["params"] > 0
    # Only the chief's files: worker 1's checkpoints (_worker1/) and the chief's _resume/ are gone.
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv", "metrics.json", "model.keras",
                                                     "model.onnx"]
    config = ModelConfig.load(out)
    assert (config.epochs, config.hyper["strategy"], config.hyper["workers"]) == (1, "multiworker", 2)
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and all(math.isfinite(float(v)) for v in rows[0].values()), rows
    # Figures over both workers' clips: training on the 4 clips of the one full batch (the 5th waits for another
    # epoch: a batch of 1 would give one worker an empty batch, on which it fails); validation on all 5.
    for column, clips in (("accuracy", 4), ("val_accuracy", 5)):
        share = float(rows[0][column]) * clips
        assert share == pytest.approx(round(share), abs=1e-3), (column, rows[0][column])
    assert json.loads((out / "metrics.json").read_text())["clips"] == 5
    stamp = {e.key: e.value for e in onnx.load(str(out / "model.onnx")).metadata_props}[DIGEST_KEY]
    assert stamp == keras_digest(out)  # model.onnx was made from the model.keras there now: nothing rewrote it
    model, _ = load_model(out)
    probs = predict_frames(model, np.zeros((1, config.frames, config.size, config.size, 3), np.uint8))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

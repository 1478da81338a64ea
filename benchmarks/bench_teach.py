"""Learning from few examples: accuracy against the number of examples for LRCN and ConvLSTM, and teaching's speed.

    python benchmarks/bench_teach.py [--models lrcn convlstm] [--other ../shared/data/other-actions] [--write]
                                     [--no-timing]

For each model (:mod:`har.teaching.protocol`): the nine other actions taught at once from 1, 2, 3, 5 or all clips of
their teaching groups, scored 15-way on their other groups and on the base model's test groups; and each of the
six base classes left out and taught back. Then (unless ``--no-timing``) the wall-clock time of teaching nine
actions from 5 clips each with the command line (``python -m har teach``, a fresh process), and of one action from 5
clips with a loaded model, as the app's Teach tab does. ``--write`` stores it all in ``models/<name>/fewshot.json``
(the dashboard draws it), with the classes and groups used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from har.teaching.protocol import DRAWS, SHOTS, Clips  # noqa: E402

FEWSHOT_FILE = "fewshot.json"


def measure(name: str, other_dir: Path, timing: bool) -> dict:
    from har import Recognizer
    from har.data.dataset import clips_of, index_dataset
    from har.modeldir import load_model
    from har.serve.export import keras_digest
    from har.teaching import classifier, protocol
    from har.teaching.basedata import TeachData
    from har.teaching.embedding import PROBS, embedder
    from har.train.recipe import find_data

    rec = Recognizer(name, runtime="auto")
    directory = Path(rec.directory)
    model, config = load_model(directory)
    embed_model = embedder(model, config.size)
    dim = embed_model.output_shape[-1]
    data = TeachData.load(directory, keras_digest(directory))
    kernel, bias = model.get_layer(PROBS).get_weights()
    base_x, base_y = data.inputs()

    ucf = index_dataset(find_data(config.data))
    test_clips = clips_of(ucf, config.split["test"])
    t0 = time.perf_counter()
    test = Clips(protocol.served_inputs(rec, embed_model, [c.path for c in test_clips]),
                 np.array([config.classes.index(c.label) for c in test_clips]), [c.group for c in test_clips],
                 [c.path.name for c in test_clips])
    base_accuracy = float(((test.x[:, 0, :dim] @ kernel + bias).argmax(axis=1) == test.labels).mean())
    other_index = index_dataset(other_dir)
    other = Clips(protocol.example_inputs(rec, embed_model, [c.path for c in other_index.clips],
                                          lambda i, n: print(f"\r{name}: example views {i}/{n}", end="",
                                                             file=sys.stderr)),
                  other_index.labels(), [c.group for c in other_index.clips], [c.path.name for c in other_index.clips])
    print(f"\n{name}: inputs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    curve = protocol.other_actions(base_x, base_y, kernel, bias, dim, test, base_accuracy, other)
    curve["groups"] = {other_index.classes[c]: g for c, g in curve["groups"].items()}
    back = protocol.left_out(data, kernel, bias, dim, test)
    out = {"model": name, "base_sha256": keras_digest(directory), "runtime": rec.runtime, "precision": rec.precision,
           "teach_data": data.info.get("precision"), "base_test_accuracy": round(base_accuracy, 4),
           "other_actions": {"data": other_dir.name, "classes": list(other_index.classes), **curve},
           "left_out": {config.classes[c]: rows for c, rows in back.items()},
           "protocol": (f"other actions: each class's groups sorted, the first half (at most "
                        f"{protocol.MOST_TEACHING_GROUPS}) teach, the rest score; all {len(other_index.classes)} "
                        f"taught at once from n clips of the teaching groups ({DRAWS} random draws a point, one for "
                        f"'all'), {curve['ways']}-way. Left out: each base class dropped from the base's last "
                        "layer and stored views, taught back from n of its training clips, scored on its test "
                        "groups (its embedding was trained with the class: an upper bound)."),
           "shots": list(SHOTS),
           "method": {"l2": classifier.L2, "base_l2": classifier.BASE_L2,
                      "descriptor_weight": classifier.DESCRIPTOR_WEIGHT, "new_offset": classifier.NEW_OFFSET},
           "note": ("The other-action classes and groups above were used here as actions to teach; an open-set fit "
                    "that trains with them as outliers makes this curve optimistic for its threshold only if the "
                    "same groups are used there.")}
    if timing:
        out["timing"] = timings(rec, name, other_index)
    out["measured"] = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "host": platform.node(),
                       "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
                       "threads": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
                                   if k in os.environ}}
    return out


def timings(rec, name: str, index) -> dict:
    """Seconds to teach nine actions from 5 clips each (command line, fresh process) and one action from 5 clips
    with ``rec`` loaded (the app's case)."""
    from har import teach

    by_class: dict[str, list[Path]] = {}
    for c in index.clips:
        by_class.setdefault(c.label, []).append(c.path)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "examples"
        for label, paths in by_class.items():
            (folder / label).mkdir(parents=True)
            for p in paths[:5]:
                (folder / label / p.name).symlink_to(p)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "har", "teach", "--model", name, "--examples", str(folder),
                               "--out", str(Path(tmp) / "nine"), "--json"], cwd=REPO, capture_output=True, text=True)
        cli = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        first = sorted(by_class)[0]
        teach(rec, {first: by_class[first][:5]}, Path(tmp) / "warm")  # TensorFlow loaded, as in a running app
        t0 = time.perf_counter()
        teach(rec, {first: by_class[first][5:10]}, Path(tmp) / "one")
        one = time.perf_counter() - t0
    return {"cli_nine_actions_5_clips_s": round(cli, 1), "app_one_action_5_clips_s": round(one, 1),
            "cli_command": f"python -m har teach --model {name} --examples FOLDER --out DIR (9 folders x 5 clips)"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["lrcn", "convlstm"])
    p.add_argument("--other", default=str(REPO.parent / "shared" / "data" / "other-actions"))
    p.add_argument("--write", action="store_true", help=f"store models/<name>/{FEWSHOT_FILE}")
    p.add_argument("--no-timing", action="store_true")
    args = p.parse_args()
    from har.modeldir import resolve_model_dir
    from har.serve.runtime import load_tensorflow

    load_tensorflow()
    for name in args.models:
        result = measure(name, Path(args.other), not args.no_timing)
        print(f"{name}: base test accuracy {result['base_test_accuracy']:.3f}")
        for row in result["other_actions"]["rows"]:
            print(f"  {row['examples']!s:>4} examples: new actions {row['new_accuracy']:.3f} "
                  f"({row['new_lowest']:.3f}-{row['new_highest']:.3f}), base classes lose "
                  f"{row['base_loss_points']:+.1f} points")
        for cls, rows in result["left_out"].items():
            print(f"  left out {cls}: " + ", ".join(f"{r['examples']}: {r['accuracy']:.2f}" for r in rows))
        if "timing" in result:
            print(f"  timing: {result['timing']}")
        if args.write:
            path = resolve_model_dir(name) / FEWSHOT_FILE
            path.write_text(json.dumps(result, indent=1) + "\n")
            print(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``teach`` and ``teach-data`` sub-commands of ``python -m har``.

``teach --model lrcn --examples FOLDER --out DIR``: a folder per new action (its name is the action's), or a list
file of ``link-or-path, Label[, start, end]`` lines as ``batch`` reads (:mod:`har.batch.items`); a bar shows
the examples done. ``teach-data --model lrcn``: the base model's compact training data (:mod:`har.teaching.basedata`),
made again from the dataset it was trained on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from har.errors import HarError
from har.settings import RUNTIMES


def add_teach(sub) -> None:
    """The ``teach`` and ``teach-data`` parsers, added to ``sub`` (the command line's sub-parsers)."""
    s = sub.add_parser("teach", help="teach a model new actions from a few example clips: a new model directory")
    s.add_argument("--model", default="lrcn", help="the base: lrcn, convlstm or a model directory")
    s.add_argument("--examples", required=True, metavar="FOLDER_OR_LIST",
                   help="a folder per new action (named as the action), or a list file of 'link-or-path, Label"
                        "[, start, end]' lines")
    s.add_argument("--out", required=True, help="the taught model directory to write")
    s.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="runtime of the base model's per-frame half")
    s.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    s.set_defaults(func=run_teach)

    s = sub.add_parser("teach-data", help="store what teaching needs of a model's training data in its directory")
    s.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    s.add_argument("--data", default=None, help="the dataset it was trained on (default: the one its config "
                                                "names, looked for in data/ and ../shared/data/)")
    s.add_argument("--cache-dir", default=None, help="frame cache (default ~/.cache/har-studio/frames)")
    s.set_defaults(func=run_teach_data)


def examples_of(path: str) -> dict[str, list]:
    """``{action: [file, or (link, start, end)]}`` from a folder per action or a list file."""
    from har.batch.items import collect

    p = Path(path)
    if not p.exists():
        raise HarError(f"'{path}' does not exist: give a folder with a sub-folder per new action, or a list file.")
    found: dict[str, list] = {}
    for item in collect([path]):
        if not item.expected:
            raise HarError(f"'{item.input}' has no action name: put it in a folder named as its action, or give "
                           "'link-or-path, Label' in the list.")
        found.setdefault(item.expected, []).append((item.input, item.start_s, item.end_s) if item.link
                                                   else item.input)
    return found


def run_teach(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from har.teaching.api import teach

    examples = examples_of(args.examples)
    with tqdm(total=100, unit="%", disable=None, file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}",
              ncols=min(shutil.get_terminal_size((100, 20)).columns, 120)) as bar:
        def progress(fraction, message):
            if fraction is not None:
                bar.update(max(0, round(100 * fraction) - bar.n))
            bar.set_description_str(message[:50])

        rec = teach(args.model, examples, args.out, progress=progress, runtime=args.runtime)
    taught = rec.config.taught
    if args.json:
        print(json.dumps({"out": str(rec.directory), "base": taught["base"], "classes": list(rec.config.classes),
                          "taught": taught["classes"], "examples": len(taught["examples"]),
                          "seconds": taught["seconds"]}))
        return 0
    print(f"{rec.directory}: {taught['base']} + {', '.join(taught['classes'])} from {len(taught['examples'])} "
          f"examples in {taught['seconds']:.1f} s")
    print(f"serve it: python -m har predict VIDEO --model {rec.directory}")
    return 0


def run_teach_data(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from har.config import ModelConfig
    from har.modeldir import resolve_model_dir
    from har.serve.runtime import load_tensorflow
    from har.teaching.basedata import TEACH_FILE, make_teach_data
    from har.train.recipe import find_data

    load_tensorflow()
    directory = resolve_model_dir(args.model)
    data = args.data or find_data(ModelConfig.load(directory).data)
    with tqdm(total=100, unit="%", disable=None, file=sys.stderr) as bar:
        def progress(fraction, message):
            bar.update(max(0, round(100 * fraction) - bar.n))

        made = make_teach_data(directory, data, args.cache_dir, progress)
    print(f"{directory / TEACH_FILE}: {made.info['clips']} clips x {len(made.info['views'])} views")
    return 0

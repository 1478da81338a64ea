"""Command line: ``python -m har index|train|evaluate|predict|batch|export|teach|docs|download ...``.

Errors a user caused (our :class:`HarError`) print one line ``error: <message>`` on stderr and exit 1, no
traceback. Machine-readable output (``--json``) is one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from har.errors import HarError
from har.settings import RUNTIMES


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter is not for users: import it with stderr silenced (har.serve.runtime).
    from har.serve.runtime import load_tensorflow

    load_tensorflow()


def cmd_index(args: argparse.Namespace) -> int:
    from har.data.dataset import describe, index_dataset

    index = index_dataset(args.data)
    report = describe(index)
    if args.json:
        print(json.dumps({"root": str(index.root), "classes": report.classes, "clips": report.clips,
                          "groups": report.groups, "seconds": round(report.seconds, 2),
                          "unreadable": [{"path": p, "reason": r} for p, r in report.unreadable]}))
        return 0
    print(f"{index.root}: {len(index.classes)} classes, {report.clips} clips, {report.groups} groups, "
          f"{report.seconds / 60:.1f} min of video")
    print(f"{'class':<24}{'clips':>7}{'groups':>8}{'minutes':>9}")
    for name, row in report.classes.items():
        print(f"{name:<24}{int(row['clips']):>7}{int(row['groups']):>8}{row['seconds'] / 60:>9.1f}")
    if report.unreadable:
        print(f"{len(report.unreadable)} unreadable file(s):")
        for path, reason in report.unreadable:
            print(f"  {path}: {reason}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from har.evaluation.evaluate import evaluate_dir

    result = evaluate_dir(args.model, args.data, cache_dir=Path(args.cache_dir) if args.cache_dir else None)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']} on {result['data']}: {result['clips']} clips, accuracy {result['accuracy']:.3f}, "
          f"macro-F1 {result['macro_f1']:.3f}")
    print(f"{'class':<24}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}")
    for name, row in result["per_class"].items():
        print(f"{name:<24}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>7.3f}{row['support']:>9}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from har.serve.export import export_onnx  # it starts TensorFlow quietly itself

    for path in export_onnx(args.model):
        print(path)
    if args.data:  # the int8 per-frame half, calibrated on the training groups' frames
        from har.serve.quantize import quantize_frame

        print(quantize_frame(args.model, args.data))
    return 0


def cmd_openset(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from har.modeldir import resolve_model_dir
    from har.train.fit import fit_openset

    config = fit_openset(resolve_model_dir(args.model), args.data, Path(args.cache_dir) if args.cache_dir else None,
                         args.others)
    print(json.dumps(config.openset))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from har import Recognizer
    from har.evaluation.explain import explain_examples
    from har.modeldir import resolve_model_dir

    directory = resolve_model_dir(args.model)
    clips = {p.stem.split("_")[1]: p for p in sorted(Path(args.examples).glob("v_*.*"))}
    if not clips:
        raise HarError(f"No example clips (v_<Class>_gGG_cCC.*) in {args.examples}.")
    _quiet_tensorflow()
    name = {"lrcn": "LRCN", "convlstm": "ConvLSTM"}.get(directory.name, directory.name)
    print(explain_examples(Recognizer(directory, runtime=args.runtime), clips, directory, name))
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from har.reports.pages import write_pages

    for path in write_pages(Path(args.out) if args.out else None):
        print(path)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from har import download

    def progress(fraction: float | None, message: str) -> None:
        if sys.stderr.isatty():  # a live status line for people, nothing for scripts and logs
            print(f"\r{message[:70]:<70}", end="", file=sys.stderr, flush=True)

    try:
        path = download(args.url, Path(args.out), start_s=args.start, end_s=args.end, progress=progress)
    finally:
        if sys.stderr.isatty():
            print(file=sys.stderr)
    print(path)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from har.links.fetch import fetched, is_url
    from har.media.video import probe
    from har.modeldir import resolve_model_dir

    log = logging.getLogger("har.predict")

    def progress(fraction: float | None, message: str) -> None:  # a download may not know its fraction
        log.info("%s %s", "    " if fraction is None else f"{fraction:4.0%}", message)

    # The annotated copy shows the timeline's labels; a window, hop or penalty asks for a timeline.
    timeline = args.timeline or any(v is not None for v in (args.annotate, args.window_s, args.hop_s, args.penalty))
    resolve_model_dir(args.model)  # a wrong --model fails before any download
    if is_url(args.input):
        source = fetched(args.input, progress=progress)
    else:
        probe(args.input)  # a missing or broken file fails at once
        source = nullcontext(Path(args.input))
    with source as path:
        # TensorFlow starts only now (a bad file or link is refused in about a second, not after its start-up),
        # on a thread: its import and the model's warm-up run while the video decodes.
        from har import UNCERTAIN, Recognizer, analyze

        recognizer = Recognizer(args.model, background=True, runtime=args.runtime)
        try:
            result = analyze(path, recognizer, timeline=timeline, annotate_to=args.annotate, top_k=args.top_k,
                             window_s=args.window_s, hop_s=args.hop_s, penalty=args.penalty,
                             progress=progress)[recognizer.name]
            explanation = _explain(recognizer, path, args.explain) if args.explain else None
        except BaseException:
            # The loader silences stderr while TensorFlow imports: let it finish before the error is printed.
            recognizer.settle()
            raise
    out = {**result.to_dict(), "input": args.input, "runtime": recognizer.runtime}
    if explanation is not None:
        out["explanation"] = {**explanation.to_dict(), "strip": args.explain}
    if result.clip.partly_read:  # a truncated or damaged file: the answer is about the part that decodes
        print(f"warning: {result.clip.read_warning()}", file=sys.stderr)
    if args.json:
        print(json.dumps(out))
        return 0
    clip = result.clip
    verdict = f"{UNCERTAIN} (top probability {clip.top[0].score:.1%} < {clip.uncertain_below:.0%})" \
        if clip.uncertain else f"{clip.label} ({clip.top[0].score:.1%})"
    print(f"{args.input}: {recognizer.name} says {verdict}")
    for s in clip.top:
        print(f"  {s.label:<24}{s.score:>7.1%}")
    if result.timeline is not None:
        t = result.timeline
        k = len(t.window_starts)
        print(f"timeline: {t.duration_s:.1f} s, {k} window{'s' if k > 1 else ''} of {t.window_s:g} s every "
              f"{t.hop_s:g} s, switching penalty {t.penalty:g}")
        for seg in t.segments:
            print(f"  {seg.start_s:>7.1f} - {seg.end_s:>7.1f} s  {seg.label:<28}{seg.score:>6.0%}")
    if result.annotated is not None:
        print(f"annotated copy: {result.annotated}")
    if explanation is not None:
        print(f"{explanation.summary()}\nexplanation strip: {args.explain}")
    return 0


def _explain(recognizer, path: Path, out: str):
    """The recognizer's reasons on the clip, drawn as a strip into ``out``; returns the explanation."""
    from har.evaluation.explain import explain, save_strip, strip

    explanation = explain(recognizer, path)
    save_strip(strip([explanation]), out)
    return explanation


def cmd_batch(args: argparse.Namespace) -> int:
    import shutil
    import time

    from tqdm import tqdm

    from har.batch.items import collect
    from har.batch.report import summary_text, write_summary
    from har.batch.results import Results, manifest
    from har.batch.runner import run
    from har.links.fetch import FetchLimits
    from har.modeldir import resolve_model_dir

    if args.jobs < 1 or args.top_k < 1:
        raise HarError("--jobs and --top-k must be whole numbers of at least 1.")
    limits = FetchLimits.from_env()  # a bad HAR_* setting stops the batch before it starts
    directory = resolve_model_dir(args.model)
    items = collect(args.inputs)
    results = Results(args.out, manifest(items, str(directory), args.top_k), resume=args.resume)
    todo = [i for i in items if i.n not in results.done]
    if results.done:
        print(f"resuming: {len(results.done)} of {len(items)} done, {len(todo)} to go", file=sys.stderr)
    from har import Recognizer

    recognizer = Recognizer(directory, runtime=args.runtime)  # ModelError: the batch cannot start
    log = logging.getLogger("har.batch.runner")
    t0 = time.perf_counter()
    # A bar with ETA on a terminal only (tqdm's disable=None); scripts and logs get one line per item with -v.
    with tqdm(total=len(items), initial=len(items) - len(todo), unit="video", disable=None, file=sys.stderr,
              ncols=min(shutil.get_terminal_size((100, 20)).columns, 120)) as bar:  # a terminal may say 0 columns
        for row in run(todo, recognizer, top_k=args.top_k, jobs=args.jobs, limits=limits,
                       workdir=Path(args.out) / ".downloads"):
            results.add(row)
            bar.update(1)
            shown = row["label"] if row["status"] == "ok" else row["status"]
            bar.set_postfix_str(f"#{row['n']} {shown}"[:40])
            log.info("#%d %s: %s%s", row["n"], row["input"], shown, f" ({row['error']})" if row["error"] else "")
    seconds = time.perf_counter() - t0
    summary = write_summary(args.out, results.sorted(), recognizer.config.classes)
    print(summary_text(summary))
    if todo:
        print(f"{len(todo)} video{'s' if len(todo) > 1 else ''} in {seconds:.1f} s "
              f"({len(todo) / seconds * 60:.1f} per minute); results in {args.out}/results.csv", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m har", description="HAR Studio: human action recognition.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="describe a folder-per-class dataset")
    s.add_argument("data", help="dataset folder (one sub-folder per class)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_index)

    from har.train.command import add_train

    add_train(sub)

    from har.teaching.command import add_teach

    add_teach(sub)

    s = sub.add_parser("evaluate", help="score a model on every clip of a folder-per-class dataset")
    s.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    s.add_argument("--data", required=True)
    s.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    s.add_argument("--cache-dir", default=None)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="recognise the action in a video: top-k, timeline, annotated copy")
    s.add_argument("input", help="video file or link")
    s.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    s.add_argument("--top-k", type=int, default=5, help="how many classes to list (default 5)")
    s.add_argument("--timeline", action="store_true", help="slide a window over the video: segments over time")
    s.add_argument("--window-s", type=float, default=None,
                   help="timeline window in seconds (default: har.serve.timeline.WINDOW_S for a model trained on "
                        "short crops, else the median training clip; implies --timeline)")
    s.add_argument("--hop-s", type=float, default=None,
                   help="timeline hop in seconds (default: har.serve.timeline.HOP_S for a model trained on short "
                        "crops, "
                        "else the model's, 1; implies --timeline)")
    s.add_argument("--penalty", type=float, default=None,
                   help="the timeline decoder's cost of a change of action, in log-probability (default: "
                        "har.serve.timeline.SWITCH_PENALTY; 0: each step's own best; implies --timeline)")
    s.add_argument("--annotate", metavar="OUT.mp4", default=None,
                   help="write a copy with the label drawn on every frame (H.264 MP4; implies --timeline)")
    s.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="auto (default): ONNX Runtime on the model's ONNX copy when usable and no GPU is present "
                        "(no TensorFlow start-up), else TensorFlow; keras: always TensorFlow")
    s.add_argument("--explain", metavar="OUT.png", default=None,
                   help="write the frames the model relied on (occlusion) with where it looked (Grad-CAM) as an "
                        "image; needs TensorFlow")
    s.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("batch", help="test many videos: files, class folders, lists, links; a report of all")
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video file, folder (a sub-folder per class gives expected labels), list file (.csv, .txt: "
                        "link or path[, expected label[, start s[, end s]]] per line) or link")
    s.add_argument("--out", required=True, help="folder for results.csv, results.jsonl and the summary")
    s.add_argument("--resume", action="store_true", help="continue the batch in --out where it stopped")
    s.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    s.add_argument("--top-k", type=int, default=5, help="how many classes each row lists (default 5)")
    s.add_argument("--jobs", type=int, default=2, help="downloads at once, beside recognition (default 2)")
    s.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="as for predict: auto (default) serves ONNX Runtime when usable")
    s.set_defaults(func=cmd_batch)
    s.error = lambda message, s=s: s.exit(1, f"error: {message} (see {s.prog} --help)\n")  # one line, status 1

    s = sub.add_parser("export", help="write the ONNX copy (frame.onnx + head.onnx, or model.onnx) beside a model's "
                                      "model.keras, checked against it")
    s.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    s.add_argument("--data", default=None, help="the dataset folder the model was trained on: also write the int8 "
                                                "per-frame half (frame.int8.onnx), calibrated on its training groups")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("openset", help="fit a model's familiarity score (open set) from its training split's clips")
    s.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    s.add_argument("--data", required=True, help="the dataset folder the model was trained on")
    s.add_argument("--others", default=None, help="a folder per class of clips of other actions (none of the "
                                                  "model's) that the score learns what is not a known action from")
    s.add_argument("--cache-dir", default=None, help="frame and feature cache (default ~/.cache/har-studio/frames)")
    s.set_defaults(func=cmd_openset)

    s = sub.add_parser("explain", help="store a model's explanations of one example clip per class (dashboard)")
    s.add_argument("--model", default="lrcn", help="lrcn, convlstm or a model directory")
    s.add_argument("--examples", default=str(Path(__file__).resolve().parent.parent / "examples"),
                   help="folder of v_<Class>_gGG_cCC clips (default: the app's examples)")
    s.add_argument("--runtime", choices=RUNTIMES, default="auto")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("docs", help="write docs/model-card.md (the About tab's text) and README's results from the "
                       "stored models")
    s.add_argument("--out", default=None, help="the model card's file (default: docs/model-card.md)")
    s.set_defaults(func=cmd_docs)

    s = sub.add_parser("download", help="download a video from a link (YouTube, ...) with yt-dlp, within the limits")
    s.add_argument("url", help="video link; allowed hosts: HAR_ALLOWED_HOSTS (default YouTube)")
    s.add_argument("--out", default=".", help="folder to save into (default: current folder)")
    s.add_argument("--start", type=float, default=None, help="only download from this second on")
    s.add_argument("--end", type=float, default=None, help="only download up to this second")
    s.set_defaults(func=cmd_download)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except HarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

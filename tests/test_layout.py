"""The library's layout: sub-packages by job, each with a docstring; no import cycle in har/; no module over about
400 lines; gradio never imported; the public API at package level without loading TensorFlow or yt-dlp."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import REPO

HAR = REPO / "har"
MAX_LINES = 420  # "about 400"


def _module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """``har.x`` -> the ``har.*`` modules it imports anywhere in its body (function-level imports too)."""
    modules = {_module_name(p): p for p in HAR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    # the package's lazy names (har/__init__.py's _LAZY) are imports too
    init = ast.parse((HAR / "__init__.py").read_text())
    lazy = next(n.value for n in ast.walk(init) if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "_LAZY")
    graph["har"] |= {ast.literal_eval(v) for v in lazy.values}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among modules other than the package itself (every module may import ``har``'s
    eagerly loaded names, the errors), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m] - {"har"}):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m != "har" and m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_in_har():
    graph = _imports()
    # the walk sees imports, lazy ones included
    assert "har.serve.recognizer" in graph["har"] and "har.serve.export" in graph["har.serve.backends"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"har": set(), "har.a": {"har.b"}, "har.b": {"har.c"}, "har.c": {"har.a"}}) == [
        "har.a", "har.b", "har.c", "har.a"]
    assert _cycle({"har": {"har.a"}, "har.a": {"har"}}) is None


def test_no_module_is_too_long_and_none_imports_gradio():
    for path in HAR.rglob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= MAX_LINES, f"{path.name}: {len(text.splitlines())} lines"
        tree = ast.parse(text)
        names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in n.names} | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(str(n).split(".")[0] == "gradio" for n in names), path.name


def test_the_library_is_laid_out_in_sub_packages_by_job():
    packages = [p.parent for p in HAR.glob("*/__init__.py")]
    assert len(packages) >= 4, packages
    for package in packages:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and len(doc.splitlines()) == 1, f"{package.name}: one line saying its job"
    flat = sorted(p.stem for p in HAR.glob("*.py"))
    assert len(flat) <= 10, f"har/ keeps only what every job shares at its top: {flat}"


def test_the_public_api_imports_from_the_package_without_tensorflow():
    code = ("import sys\nfrom har import Recognizer, analyze, annotate, download, ClipPrediction, Timeline, Segment, "
            "Analysis, UNCERTAIN\nimport har\n"
            "assert callable(analyze) and callable(annotate) and callable(download) and isinstance(Recognizer, type)\n"
            "assert sorted(har.__all__) == sorted(dir(har))\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'yt_dlp', 'gradio', 'onnxruntime') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    # yt-dlp loads with the first download; TensorFlow or ONNX Runtime with the first model
    assert done.stdout.strip() == "[]", done.stdout


def test_the_readme_is_a_short_page_whose_links_exist():
    import re

    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "---" and "sdk: gradio" in text.split("---")[1]  # the Space card first
    assert len(lines) < 200
    body = text.split("---", 2)[2]
    blocks = re.findall(r"```bash\n(.*?)\n```", body, re.S)
    # right after the description: the app's command, then the tests' (the one .ci/run reads)
    assert blocks[0] == "pip install -r requirements.txt && python app.py"
    assert blocks[1].startswith("apt-get") and blocks[1].endswith("python -m pytest -n 2")  # both cores
    assert body.index("<!-- test-command -->") < body.index(blocks[1]) < body.index("## ")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert "docs/images/app.png" in targets
    for target in targets:
        if "://" not in target:
            assert (REPO / target).is_file(), target
    for page in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).resolve().is_file(), f"{page.name}: {target}"

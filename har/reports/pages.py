"""The generated pages, written at once by ``python -m har docs``: the model card, README's results section and the
measured part of docs/openset.md."""

from __future__ import annotations

from pathlib import Path

from har.reports import modelcard, openset_page, readme
from har.reports.facts import all_facts
from har.reports.records import load_records


def write_pages(card: Path | None = None, readme_path: Path | None = None) -> list[Path]:
    """Write ``docs/model-card.md`` (or ``card``) and README's results (or those of ``readme_path``) from the
    stored model directories; the paths written."""
    records = load_records()
    card = card or modelcard.DOC
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(modelcard.markdown(records))
    readme_path = readme_path or readme.README
    readme_path.write_text(readme.with_results(readme_path.read_text(), all_facts(records)))
    return [card, readme_path, openset_page.write(records)]

"""A model directory's training recipe: the one command that trains it again."""

from __future__ import annotations

from pathlib import Path


def retrain_command(directory: str | Path) -> str:
    """The command that retrains the model stored in ``directory`` with the recipe its ``config.json`` records."""
    return f"python -m har train --like models/{Path(directory).name}"

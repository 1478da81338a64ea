"""How long jobs report progress: one callable type shared by fetching, the timeline, the annotated copy and the app.

A job calls ``progress(fraction, message)`` with ``fraction`` in [0, 1], or None when it cannot tell (a download
whose size is unknown). Callers that run several jobs in one bar hand each a :func:`scaled` share of it.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float | None, str], None]  # (fraction done in [0, 1] or None when unknown, message)


def silent(fraction: float | None, message: str) -> None:
    """A progress callback that ignores every report."""


def scaled(progress: Progress, a: float, b: float) -> Progress:
    """``progress`` seen through the share ``[a, b]`` of the bar: 0 maps to ``a``, 1 to ``b``, None stays None."""
    return lambda f, msg: progress(None if f is None else a + (b - a) * f, msg)

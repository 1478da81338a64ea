"""A fetch's clock: a wall-clock deadline for the whole download and a minimum transfer rate, retries included.

A read timeout (``HAR_FETCH_TIMEOUT_S``) does not stop a server that sends a byte a second, and each of yt-dlp's
retries would start the drip again. :class:`Watchdog` is a thread beside the fetch that looks every
:data:`TICK_S` at the clock and at the bytes received (:attr:`har.links.netguard.Guard.received`) and, past the
deadline or below the rate, calls :meth:`har.links.netguard.Guard.stop`: the fetch's open connections are shut
down, no new one is made, and the fetch fails with the message naming the setting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from har.links.netguard import Guard
    from har.links.options import FetchLimits

TICK_S = 0.2  # how often the clock and the bytes are looked at


def deadline_passed(limits: FetchLimits) -> str:
    return (f"The download took longer than the {limits.deadline_s:g} s this server allows for one link "
            "(HAR_FETCH_DEADLINE_S, retries included): the site is too slow, or the video too large. Choose a "
            "shorter section, try again later, or upload the clip.")


def too_slow(limits: FetchLimits, got: int) -> str:
    return (f"The site sent the video too slowly: {got / 1000:.1f} kB in the last {limits.rate_window_s:g} s, less "
            f"than the {limits.min_rate_kb_s:g} kB/s this server requires (HAR_FETCH_MIN_RATE_KB_S). Try again "
            "later, or upload the clip.")


class Watchdog:
    """Stops ``guard``'s fetch at ``limits.deadline_s`` after it starts, or when, once the media download began
    (:meth:`downloading`), fewer than ``min_rate_kb_s`` kB a second arrived over the last ``rate_window_s``.
    Use as a context manager around the fetch."""

    def __init__(self, guard: Guard, limits: FetchLimits):
        self.guard, self.limits = guard, limits
        self._done = threading.Event()
        self._since: float | None = None  # when the media download began
        self._thread = threading.Thread(target=self._watch, name="har-fetch-watchdog", daemon=True)

    def downloading(self) -> None:
        """From now on the transfer rate counts (reading a page's details is bounded by the deadline alone)."""
        if self._since is None:
            self._since = time.monotonic()

    def finished(self) -> None:
        """A file is complete: what follows (merging, checking) transfers nothing, and is bounded by the deadline."""
        self._since = None

    def __enter__(self) -> Watchdog:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        seen: deque[tuple[float, int]] = deque()  # (time, bytes received), the last rate_window_s of them
        while not self._done.wait(TICK_S):
            now = time.monotonic()
            if now - self._start >= self.limits.deadline_s:
                self.guard.stop(deadline_passed(self.limits))
                return
            if self._since is None:
                seen.clear()
                continue
            seen.append((now, self.guard.received))
            while seen and now - seen[0][0] > self.limits.rate_window_s:
                seen.popleft()
            if now - self._since >= self.limits.rate_window_s:
                got = seen[-1][1] - seen[0][1]
                if got < self.limits.min_rate_kb_s * 1000 * (seen[-1][0] - seen[0][0]):
                    self.guard.stop(too_slow(self.limits, got))
                    return

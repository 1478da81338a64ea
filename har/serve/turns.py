"""Fair turns at shared recognizers: at most ``n`` holders at once, served first come, first served.

The app's single requests and each item of a batch take a turn around their recognition. A batch gives its turn
back after every item and queues again behind whoever came meanwhile, so a visitor waits for at most one item of
someone else's batch, never for the whole batch. (``threading.Semaphore`` makes no such promise: the thread that
releases may take it again before a waiting one wakes.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    def __init__(self, n: int = 1):
        assert n >= 1, n
        self.n = n
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()  # waiting tickets, oldest first
        self._busy = 0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._queue[0] is not ticket or self._busy >= self.n:
                self._cond.wait()
            self._queue.popleft()
            self._busy += 1
            self._cond.notify_all()  # the next ticket may also fit (n > 1)
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

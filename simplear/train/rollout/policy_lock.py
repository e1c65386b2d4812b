"""Many rollouts may sample the current policy at once; a weight update waits for them and runs alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PolicyLock:
    """A readers-writer lock that prefers writers, so a weight push is not starved by a stream of rollouts."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def sampling(self) -> Iterator[None]:
        """Hold the policy for one rollout; others may sample at the same time."""
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def updating(self) -> Iterator[None]:
        """Hold the policy alone, after every rollout in flight has finished."""
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()

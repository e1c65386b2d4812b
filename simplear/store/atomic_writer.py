"""The shared shape of the store's writers: nothing is visible until close(), abort() or an exception drops it."""

from __future__ import annotations

import io
from abc import abstractmethod
from types import TracebackType


class AtomicWriter(io.BufferedIOBase):
    """A streaming writer that commits on close() and leaves the target as it was on abort() or an exception."""

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._written = 0

    def writable(self) -> bool:
        """Always writable until closed."""
        return True

    def tell(self) -> int:
        """Bytes written so far."""
        return self._written

    @abstractmethod
    def abort(self) -> None:
        """Drop everything written; the target is left as it was."""

    def _refuse_if_closed(self) -> None:
        """ValueError for a write after close() or abort()."""
        if self.closed:
            raise ValueError(f"write to closed writer for {self._uri}")

    def _abort_after(self, exc: BaseException) -> None:
        """Abort because of exc."""
        self.abort()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort_after(exc)

    def __del__(self) -> None:
        self.abort()

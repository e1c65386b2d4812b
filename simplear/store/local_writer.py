"""The local writer: a locked temp file beside the target, fsynced and renamed into place on close().

Starting a writer removes the temps of the same target that dead writers left (simplear.store.leftovers).
"""

from __future__ import annotations

import os
from pathlib import Path

from simplear.store.atomic_writer import AtomicWriter
from simplear.store.errors import StoreError
from simplear.store.leftovers import held_temp
from simplear.store.local_files import TEMP_SUFFIX


class LocalWriter(AtomicWriter):
    """Writes a temp file beside the target; close() renames it into place, abort() or an exception drops it."""

    def __init__(self, path: Path, uri: str) -> None:
        super().__init__(uri)
        self._path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = held_temp(path, TEMP_SUFFIX)
        except OSError as exc:
            super().close()
            raise StoreError(f"cannot write {uri}: {exc.strerror or exc}") from exc
        self._temp = Path(temp)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        """Append data to the pending file."""
        self._refuse_if_closed()
        try:
            written = self._file.write(data)
        except OSError as exc:
            self.abort()
            raise StoreError(f"cannot write {self._uri}: {exc.strerror or exc}") from exc
        self._written += written
        return written

    def close(self) -> None:
        """Commit: fsync the temp file and rename it over the target."""
        if self.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            os.replace(self._temp, self._path)
            self._file.close()
        except OSError as exc:
            self.abort()
            raise StoreError(f"cannot write {self._uri}: {exc.strerror or exc}") from exc
        super().close()

    def abort(self) -> None:
        """Drop everything written; the target is left as it was."""
        if self.closed:
            return
        self._temp.unlink(missing_ok=True)
        self._file.close()
        super().close()

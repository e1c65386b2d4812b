"""Local files: listing, OS errors as StoreErrors, atomic writers, and the locked temps that dead writers leave."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import shutil
import tempfile
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from simplear.store.errors import ObjectNotFound, StoreError

TEMP_SUFFIX = ".simplear-tmp"
PARTIAL_SUFFIX = ".simplear-partial"
TEMP_NAME = r"[a-z0-9_]{8}"
"""What tempfile.mkstemp / mkdtemp put between prefix and suffix."""

T = TypeVar("T")


def list_local(root: Path, recursive: bool) -> list[str]:
    """Sorted POSIX paths, relative to root, of its files (dangling links included), minus in-progress temps."""
    if not root.is_dir():
        return []
    candidates = root.rglob("*") if recursive else root.iterdir()
    relative = [p.relative_to(root) for p in candidates if p.is_file() or (p.is_symlink() and not p.exists())]
    return sorted(
        rel.as_posix()
        for rel in relative
        if not rel.name.endswith(TEMP_SUFFIX) and not any(part.endswith(PARTIAL_SUFFIX) for part in rel.parts)
    )


def run_local(uri: str, action: Callable[[], T]) -> T:
    """Run a local file operation, turning OS errors into StoreError naming uri."""
    try:
        return action()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ObjectNotFound(f"no file at {uri}") from exc
    except OSError as exc:
        raise StoreError(f"cannot access {uri}: {exc.strerror or exc}") from exc


def _still_linked(fd: int, path: Path) -> bool:
    """True when path still names the file or folder open as fd."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def held_temp(target: Path, suffix: str, folder: bool = False) -> tuple[int, Path]:
    """A new temp file (or folder) `.<target name>.XXXXXXXX<suffix>` beside target, locked by the returned descriptor.

    Abandoned temps of the same target are removed first. Close the descriptor once the temp is renamed or removed.
    A writer that dies (SIGKILL, OOM, preemption) cannot remove its temp, so each holds an exclusive flock on its own
    while it writes (the kernel drops it when the process dies) and removes the temps of the same target that nobody
    holds. A temp is created before it is locked, so another writer's cleanup may remove it in between: once it holds
    the lock, the creator checks that its temp is still there, and creates another if not.
    """
    remove_leftovers(target, suffix)
    options = {"dir": target.parent, "prefix": f".{target.name}.", "suffix": suffix}
    while True:
        if folder:
            path = Path(tempfile.mkdtemp(**options))
            fd = os.open(path, os.O_RDONLY)
        else:
            fd, name = tempfile.mkstemp(**options)
            path = Path(name)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _still_linked(fd, path):
            return fd, path
        os.close(fd)


def remove_leftovers(target: Path, suffix: str) -> list[Path]:
    """Remove the `.<target name>.XXXXXXXX<suffix>` temps beside target that no live writer holds; the removed."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{TEMP_NAME}{re.escape(suffix)}")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for candidate in target.parent.iterdir():
            if pattern.fullmatch(candidate.name) and _remove_if_abandoned(candidate):
                removed.append(candidate)
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    """Remove path (file or folder) if no process holds its lock; True when it was removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)
    return True


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

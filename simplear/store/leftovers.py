"""Temp files and staging folders beside a target: held locked by their live writer, removed by the next one.

A writer that dies (SIGKILL, OOM, preemption) cannot remove its temp file. Each writer therefore holds an
exclusive flock on its own temp while it writes (the kernel drops it when the process dies) and, when it starts,
removes the temps of the same target that nobody holds: leftovers of writers that are gone. A temp is created
before it is locked, so another writer's cleanup may remove it in between: the creator checks, once it holds the
lock, that its temp is still there, and creates another if not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path

TEMP_NAME = r"[a-z0-9_]{8}"
"""What tempfile.mkstemp / mkdtemp put between prefix and suffix."""


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

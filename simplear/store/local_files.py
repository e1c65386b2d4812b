"""Local-file helpers: listing what a store directory holds, and turning OS errors into StoreErrors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from simplear.store.errors import ObjectNotFound, StoreError

TEMP_SUFFIX = ".simplear-tmp"
PARTIAL_SUFFIX = ".simplear-partial"

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

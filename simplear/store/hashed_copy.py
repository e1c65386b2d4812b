"""Streamed copies that also measure what they copied: size and sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from simplear.store.errors import StoreError
from simplear.store.sizes import COPY_CHUNK

if TYPE_CHECKING:
    from simplear.store.store import Store


def copy_hashed(source: BinaryIO, sink: BinaryIO) -> tuple[int, str]:
    """Copy source to sink in chunks; returns the bytes copied and their sha256."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(COPY_CHUNK):
        digest.update(chunk)
        sink.write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def upload_hashed(store: Store, source: Path, uri: str) -> tuple[int, str]:
    """Stream a local file to uri; returns its size and sha256."""
    try:
        with source.open("rb") as f, store.open(uri, "wb") as sink:
            size, sha256 = copy_hashed(f, sink)
    except OSError as exc:
        raise StoreError(f"cannot upload {source} to {uri}: {exc.strerror or exc}") from exc
    return size, sha256

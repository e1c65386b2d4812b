"""The files of one shard in the store: write its errors file then its shard file, or recognise a finished one."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from simplear.data.token_shards import SHARD_DIR, TokenRecord, decode_shard, encode_shard, shard_uri
from simplear.data.tokenize_shard import ShardError
from simplear.store import ObjectNotFound, Store, join

ERRORS_DIR = "errors"


@dataclass(frozen=True)
class ShardResult:
    """A complete shard: how many records it tokenized and rejected, and its files with size and sha256."""

    shard: int
    records: int
    errors: int
    files: tuple[dict, ...]


def errors_uri(root: str, shard: int) -> str:
    """URI of the errors file of shard number `shard`."""
    return join(root, ERRORS_DIR, f"shard-{shard:05d}.jsonl")


def shard_path(shard: int) -> str:
    """Path of a shard file relative to the dataset root."""
    return f"{SHARD_DIR}/shard-{shard:05d}.safetensors"


def errors_path(shard: int) -> str:
    """Path of a shard's errors file relative to the dataset root."""
    return f"{ERRORS_DIR}/shard-{shard:05d}.jsonl"


def file_entry(path: str, data: bytes) -> dict:
    """A manifest entry {path, size, sha256} of data stored at `path`."""
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_shard(
    store: Store,
    root: str,
    shard: int,
    tokens: list[TokenRecord],
    errors: list[ShardError],
    vision: str,
    codebook_size: int,
) -> ShardResult:
    """Write the shard's errors file (or remove a stale one), then its shard file when any record was tokenized."""
    files = []
    if errors:
        data = "".join(json.dumps(error.to_json()) + "\n" for error in errors).encode()
        store.write(errors_uri(root, shard), data)
        files.append(file_entry(errors_path(shard), data))
    else:
        store.delete(errors_uri(root, shard))
    if tokens:
        data = encode_shard(tokens, vision, codebook_size)
        store.write(shard_uri(root, shard), data)
        files.append(file_entry(shard_path(shard), data))
    return ShardResult(shard, len(tokens), len(errors), tuple(sorted(files, key=lambda entry: entry["path"])))


def completed_shard(store: Store, root: str, shard: int, expected: int) -> ShardResult | None:
    """The result of a shard a previous run finished (its shard file exists, or all `expected` records failed)."""
    errors_data = _read_if_exists(store, errors_uri(root, shard))
    error_count = errors_data.count(b"\n") if errors_data is not None else 0
    shard_data = _read_if_exists(store, shard_uri(root, shard))
    if shard_data is None and error_count != expected:
        return None
    files = [file_entry(errors_path(shard), errors_data)] if errors_data is not None else []
    records = 0
    if shard_data is not None:
        records = len(decode_shard(shard_data))
        files.append(file_entry(shard_path(shard), shard_data))
    return ShardResult(shard, records, error_count, tuple(sorted(files, key=lambda entry: entry["path"])))


def _read_if_exists(store: Store, uri: str) -> bytes | None:
    """The object at uri, or None when there is none."""
    try:
        return store.read(uri)
    except ObjectNotFound:
        return None

"""Token shards: the safetensors format of codes and captions, and a shard's files (errors first) in the store."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass

import torch
from safetensors.torch import load, save

from simplear.store import ObjectNotFound, Store, join

SHARD_DIR = "tokens"
FORMAT = "simplear-tokens/1"
ERRORS_DIR = "errors"


@dataclass(frozen=True)
class TokenRecord:
    """One tokenized image: its codes [h, w], short and long caption, and its index in the meta list."""

    index: int
    codes: torch.Tensor
    short: str
    long: str


def shard_uri(root: str, shard: int) -> str:
    """URI of shard number `shard` under a token dataset root."""
    return join(root, SHARD_DIR, f"shard-{shard:05d}.safetensors")


def encode_shard(records: list[TokenRecord], vision: str, codebook_size: int) -> bytes:
    """Serialise records (all of one grid size) to safetensors bytes; captions ride in the header metadata."""
    if not records:
        raise ValueError("a shard needs at least one record")
    codes = torch.stack([r.codes.to(torch.int32) for r in records])
    metadata = {
        "format": FORMAT,
        "vision": vision,
        "codebook_size": str(codebook_size),
        "captions": json.dumps([[r.short, r.long] for r in records]),
    }
    index = torch.tensor([r.index for r in records], dtype=torch.int64)
    return _sorted_header(save({"codes": codes.contiguous(), "index": index}, metadata=metadata))


def write_token_dataset(
    store: Store, root: str, records: list[TokenRecord], vision: str, codebook_size: int, shard_size: int = 1000
) -> None:
    """A complete token dataset of ready records at root: its shards, then manifest.json (an artifact upload)."""
    with tempfile.TemporaryDirectory() as local:
        for shard, start in enumerate(range(0, len(records), shard_size)):
            data = encode_shard(records[start : start + shard_size], vision, codebook_size)
            store.write(shard_uri(local, shard), data)
        store.put_artifact(local, root)


def decode_shard(data: bytes) -> list[TokenRecord]:
    """Records of a shard's safetensors bytes."""
    tensors = load(data)
    metadata = _metadata(data)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"not a token shard (format {metadata.get('format')!r}, expected {FORMAT!r})")
    captions = json.loads(metadata["captions"])
    return [
        TokenRecord(index=int(i), codes=c.long(), short=s, long=length)
        for i, c, (s, length) in zip(tensors["index"], tensors["codes"], captions, strict=True)
    ]


def _sorted_header(data: bytes) -> bytes:
    """The same safetensors bytes with the header keys sorted: safetensors orders them differently per process."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = header.encode() + b" " * (-len(header.encode()) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` block of a safetensors header."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]).get("__metadata__", {})


@dataclass(frozen=True)
class ShardError:
    """A meta record whose image was not tokenized, and why."""

    index: int
    image_path: str
    reason: str

    def to_json(self) -> dict:
        """The errors-file line of this error."""
        return {"index": self.index, "image_path": self.image_path, "reason": self.reason}


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

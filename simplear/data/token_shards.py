"""Token shards: `tokens/shard-NNNNN.safetensors` holding visual codes and their captions, one file per shard."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass

import torch
from safetensors.torch import load, save

from simplear.store import Store, join

SHARD_DIR = "tokens"
FORMAT = "simplear-tokens/1"


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


def read_shard(store: Store, root: str, shard: int) -> list[TokenRecord]:
    """Records of one shard of a token dataset."""
    return decode_shard(store.read(shard_uri(root, shard)))


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

"""A token dataset copied from the store to local disk, read one record at a time through memory maps."""

from __future__ import annotations

import bisect
import functools
import json
from pathlib import Path

from safetensors import safe_open

from simplear.data.token_shards import FORMAT, SHARD_DIR, TokenRecord
from simplear.store import Store


@functools.lru_cache(maxsize=16)
def _captions(path: str) -> list[list[str]]:
    """The [short, long] captions of one shard file (parsed once per process, a few shards kept)."""
    with safe_open(path, framework="pt") as shard:
        return json.loads(shard.metadata()["captions"])


def _shard_header(path: Path) -> tuple[int, int]:
    """Number of records and codebook size of one shard file, checking its format."""
    with safe_open(str(path), framework="pt") as shard:
        metadata = shard.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a token shard (format {metadata.get('format')!r}, expected {FORMAT!r})")
        return shard.get_slice("codes").get_shape()[0], int(metadata["codebook_size"])


class TokenRecords:
    """Random access by index to every record of a token dataset's shards on local disk."""

    def __init__(self, shard_paths: list[Path]) -> None:
        if not shard_paths:
            raise ValueError("a token dataset needs at least one shard")
        headers = [_shard_header(path) for path in shard_paths]
        codebooks = {codebook for _, codebook in headers}
        if len(codebooks) != 1:
            raise ValueError(f"shards disagree on the codebook size: {sorted(codebooks)}")
        self.paths = [str(path) for path in shard_paths]
        self.codebook_size = codebooks.pop()
        self._starts = [0]
        for count, _ in headers:
            self._starts.append(self._starts[-1] + count)

    @classmethod
    def download(cls, store: Store, root: str, local_dir: Path) -> TokenRecords:
        """Copy the complete token dataset at `root` (verified against its manifest) to local_dir and open it."""
        store.get_artifact(root, local_dir)
        paths = sorted((local_dir / SHARD_DIR).glob("shard-*.safetensors"))
        if not paths:
            raise ValueError(f"token dataset {root} holds no {SHARD_DIR}/shard-*.safetensors files")
        return cls(paths)

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: int) -> TokenRecord:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} is outside [0, {len(self)})")
        shard = bisect.bisect_right(self._starts, index) - 1
        row = index - self._starts[shard]
        path = self.paths[shard]
        with safe_open(path, framework="pt") as f:
            codes = f.get_slice("codes")[row : row + 1][0].long()
            meta_index = int(f.get_slice("index")[row : row + 1][0])
        short, long = _captions(path)[row]
        return TokenRecord(index=meta_index, codes=codes, short=short, long=long)

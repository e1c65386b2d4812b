"""The run's metrics as JSON lines in the store, rewritten whole after every row so a crash loses none."""

from __future__ import annotations

import json

from simplear.store import ObjectNotFound, Store


class JsonlMetricsLog:
    """Rows of `<output>/logs/train.jsonl`; a resumed run keeps the rows up to its checkpoint and goes on from there."""

    def __init__(self, store: Store, uri: str, resume_step: int) -> None:
        self.store = store
        self.uri = uri
        self.lines = [line for line in self._existing() if json.loads(line)["step"] <= resume_step]

    def _existing(self) -> list[str]:
        """Lines already in the store (none for a fresh run)."""
        try:
            return self.store.read(self.uri).decode().splitlines()
        except ObjectNotFound:
            return []

    def write(self, row: dict) -> None:
        """Append one row and upload the file."""
        self.lines.append(json.dumps(row, sort_keys=True))
        self.store.write(self.uri, ("\n".join(self.lines) + "\n").encode())

    def close(self) -> None:
        """Nothing is buffered: every row is in the store once write returns."""

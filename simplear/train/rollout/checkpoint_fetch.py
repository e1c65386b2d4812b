"""The server side of a weight push: a complete checkpoint in the store, as a local directory for the engine."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from simplear.store import ArtifactNotFound, Store, is_s3, resolve_local


@contextmanager
def local_checkpoint(store: Store, uri: str, scratch: str | None = None) -> Iterator[Path]:
    """A local directory holding the complete artifact at `uri` (downloaded and verified when remote).

    ArtifactNotFound when it has no manifest: readers ignore partly written checkpoints.
    """
    if not store.artifact_exists(uri):
        raise ArtifactNotFound(f"no complete checkpoint at {uri}: it has no manifest.json")
    if not is_s3(uri):
        yield resolve_local(uri)
        return
    workdir = Path(tempfile.mkdtemp(prefix="simplear-weights-", dir=scratch))
    try:
        store.get_artifact(uri, workdir / "checkpoint")
        yield workdir / "checkpoint"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

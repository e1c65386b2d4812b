"""Where the demo's data and checkpoints go: a local directory, an S3 endpoint from the environment, or SeaweedFS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from simplear.config import StoreSettings
from simplear.s3_server import EmbeddedS3
from simplear.store import Store, is_s3

DEMO_BUCKET = "simplear-demo"


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (inherited by every process the run starts), restoring them afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def demo_store(out: Path, store: str | None, embedded_s3: bool) -> Iterator[str]:
    """The store root of the run: `store`, s3://simplear-demo on SeaweedFS started for the run, or <out>/store.

    A given S3 store is reached once first, so a wrong endpoint, credentials or bucket fail before the pipeline.
    """
    if embedded_s3:
        with EmbeddedS3(data_dir=out / "s3") as server, _environment(server.env()):
            server.create_bucket(DEMO_BUCKET)
            yield f"s3://{DEMO_BUCKET}"
        return
    if store and is_s3(store):
        if StoreSettings.from_env().endpoint is None:
            raise ValueError(
                f"--store {store} needs SIMPLEAR_S3_ENDPOINT (and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            )
        Store().list(store, recursive=False)
    yield store or str(out / "store")

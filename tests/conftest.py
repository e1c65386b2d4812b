"""Shared test fixtures: a real S3 server (SeaweedFS) for the session and a fresh bucket per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from simplear.s3_server import EmbeddedS3
from simplear.store import Store


@pytest.fixture(scope="session")
def s3_server() -> Iterator[EmbeddedS3]:
    """One SeaweedFS S3 server on 127.0.0.1 for the whole session, stopped at the end."""
    with EmbeddedS3() as server:
        yield server


@pytest.fixture
def s3_store(s3_server: EmbeddedS3) -> tuple[Store, str]:
    """A Store reaching the session's S3 server and the URI of a fresh, empty bucket."""
    bucket = "test-" + secrets.token_hex(8)
    s3_server.create_bucket(bucket)
    return Store(s3_server.settings()), f"s3://{bucket}"

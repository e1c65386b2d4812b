"""The minio client for one set of S3 settings: created on first use, with retries and clear errors."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3.exceptions import HTTPError

from simplear.config import StoreSettings
from simplear.store.errors import StoreError
from simplear.store.s3_endpoint import parse_endpoint
from simplear.store.s3_failures import explain, is_transient

S3_ENV_HINT = (
    "set SIMPLEAR_S3_ENDPOINT (host:port or http(s)://host:port), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
    "and, for TLS, SIMPLEAR_S3_SECURE=true"
)

MAX_BACKOFF_S = 10.0

T = TypeVar("T")

log = logging.getLogger(__name__)


class S3Connection:
    """One lazily created minio client; every call through it is retried and its failures explained."""

    def __init__(self, settings: StoreSettings, backoff_s: float, timeout: urllib3.Timeout) -> None:
        self.settings = settings
        self._backoff_s, self._timeout = backoff_s, timeout
        self._minio: Minio | None = None

    def client(self, uri: str) -> Minio:
        """The minio client, created on first use; StoreError when the S3 settings are missing or invalid."""
        if self._minio is not None:
            return self._minio
        settings = self.settings
        if not settings.endpoint:
            raise StoreError(f"{uri} needs S3 but no endpoint is configured: {S3_ENV_HINT}")
        if not settings.access_key or settings.secret_key is None:
            raise StoreError(
                f"{uri} needs S3 credentials for endpoint {settings.endpoint}: "
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        host, secure = parse_endpoint(settings)
        http = urllib3.PoolManager(
            timeout=self._timeout,
            retries=False,
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        try:
            self._minio = Minio(
                host,
                access_key=settings.access_key,
                secret_key=settings.secret_key.get_secret_value(),
                secure=secure,
                region=settings.region or "us-east-1",
                http_client=http,
            )
        except ValueError as exc:
            raise StoreError(f"invalid S3 endpoint {settings.endpoint!r} (SIMPLEAR_S3_ENDPOINT): {exc}") from exc
        return self._minio

    def retry(self, uri: str, call: Callable[[], T]) -> T:
        """Run an S3 call; transient failures are retried with exponential backoff (capped at MAX_BACKOFF_S, one
        warning per retry) for up to settings.retry_seconds, then, like any other failure, become a StoreError."""
        started = time.monotonic()
        budget = self.settings.retry_seconds
        attempt = 1
        while True:
            try:
                return call()
            except (S3Error, ServerError, InvalidResponseError, HTTPError, ValueError) as exc:
                delay = min(self._backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                elapsed = time.monotonic() - started
                if not is_transient(exc) or elapsed + delay > budget:
                    raise self.explain(exc, uri, attempt, elapsed) from exc
                log.warning("%s; retry %d in %.1f s (S3 failures are retried for %g s, SIMPLEAR_S3_RETRY_SECONDS)",
                            self.explain(exc, uri), attempt, delay, budget)
            time.sleep(delay)
            attempt += 1

    def explain(self, exc: Exception, uri: str, attempts: int = 1, elapsed_s: float = 0.0) -> StoreError:
        """A StoreError that says what went wrong with uri at this connection's endpoint and what to check."""
        return explain(exc, uri, self.settings.endpoint, attempts, elapsed_s)

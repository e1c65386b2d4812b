"""S3 through the minio SDK: settings, endpoint, one retried connection, failures explained, reader and writer."""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import InvalidResponseError, S3Error, ServerError
from pydantic import ValidationError
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ProtocolError, ReadTimeoutError, SSLError

from simplear.config import STORE_ENV_TYPED, StoreSettings
from simplear.store.errors import ObjectNotFound, StoreError
from simplear.store.local import AtomicWriter
from simplear.store.uri import S3Location, parse_s3

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB
MAX_BACKOFF_S = 10.0
CREDENTIAL_ERRORS = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken"}
TRANSIENT_S3_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
S3_ENV_HINT = (
    "set SIMPLEAR_S3_ENDPOINT (host:port or http(s)://host:port), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
    "and, for TLS, SIMPLEAR_S3_SECURE=true"
)

DEFAULT_TIMEOUT = urllib3.Timeout(connect=3.0, read=60.0)

T = TypeVar("T")

log = logging.getLogger(__name__)


def settings_from_env() -> StoreSettings:
    """The S3 settings of the environment; StoreError naming the variable that holds an invalid value."""
    try:
        return StoreSettings.from_env()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name, takes = STORE_ENV_TYPED.get(str(error["loc"][0]), (".".join(map(str, error["loc"])), "a valid value"))
            problems.append(f"{name} takes {takes}: {error['msg']}")
        raise StoreError(f"invalid S3 settings in the environment ({'; '.join(problems)})") from None


def minio_client(settings: StoreSettings, uri: str, timeout: urllib3.Timeout = DEFAULT_TIMEOUT) -> Minio:
    """A minio client for settings, to reach uri; StoreError when the S3 settings are missing or invalid."""
    if not settings.endpoint:
        raise StoreError(f"{uri} needs S3 but no endpoint is configured: {S3_ENV_HINT}")
    if not settings.access_key or settings.secret_key is None:
        raise StoreError(
            f"{uri} needs S3 credentials for endpoint {settings.endpoint}: "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    host, secure = parse_endpoint(settings)
    http = urllib3.PoolManager(
        timeout=timeout,
        retries=False,
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
    try:
        return Minio(
            host,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            secure=secure,
            region=settings.region or "us-east-1",
            http_client=http,
        )
    except ValueError as exc:
        raise StoreError(f"invalid S3 endpoint {settings.endpoint!r} (SIMPLEAR_S3_ENDPOINT): {exc}") from exc


def _invalid_endpoint(raw: str) -> StoreError:
    """The error for an endpoint that is neither host:port nor http(s)://host:port."""
    return StoreError(f"invalid S3 endpoint {raw!r} (SIMPLEAR_S3_ENDPOINT): use host:port or http(s)://host:port")


def parse_endpoint(settings: StoreSettings) -> tuple[str, bool]:
    """host:port and TLS flag from an endpoint given as host:port or http(s)://host:port (a scheme wins)."""
    raw = (settings.endpoint or "").strip()
    secure = settings.secure
    host = raw
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise _invalid_endpoint(raw)
        secure, host = parts.scheme == "https", parts.netloc
    if not host or "/" in host:
        raise _invalid_endpoint(raw)
    return host, secure


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception in a chain of causes/contexts."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return exc


def _network_reason(exc: BaseException) -> str:
    """A short human reason for a network failure, e.g. 'connection refused'."""
    root = _root_cause(exc)
    if isinstance(root, OSError) and root.strerror:
        return root.strerror.lower()
    return str(root) or type(root).__name__


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: network trouble, timeouts, HTTP 5xx, S3 throttling."""
    if isinstance(exc, S3Error):
        return exc.code in TRANSIENT_S3_CODES or exc.response.status >= 500
    if isinstance(exc, ServerError):
        return exc.status_code >= 500
    if isinstance(exc, InvalidResponseError):
        return exc._code >= 500
    return isinstance(exc, HTTPError) and not isinstance(exc, SSLError)


def explain(exc: Exception, uri: str, endpoint: str | None, attempts: int = 1, elapsed_s: float = 0.0) -> StoreError:
    """A StoreError that says what went wrong with uri at the S3 endpoint and what to check."""
    tries = f" (after {attempts} attempts in {elapsed_s:.1f} s)" if attempts > 1 else ""
    if isinstance(exc, S3Error):
        bucket = exc.bucket_name or parse_s3(uri).bucket
        if exc.code == "NoSuchKey":
            return ObjectNotFound(f"no object at {uri} (S3 endpoint {endpoint})")
        if exc.code == "NoSuchBucket":
            return StoreError(f"bucket {bucket!r} does not exist at S3 endpoint {endpoint} (for {uri})")
        if exc.code in CREDENTIAL_ERRORS:
            return StoreError(
                f"access denied by S3 endpoint {endpoint} for {uri} ({exc.code}): the credentials are invalid "
                "or lack permission; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        return StoreError(f"S3 endpoint {endpoint} failed for {uri}{tries}: {exc.code}: {exc.message}")
    if isinstance(exc, SSLError):
        return StoreError(
            f"TLS to S3 endpoint {endpoint} failed for {uri}: {_network_reason(exc)}; "
            "check SIMPLEAR_S3_SECURE and the endpoint's scheme"
        )
    if isinstance(exc, ConnectTimeoutError):
        return StoreError(f"cannot reach S3 endpoint {endpoint} for {uri}{tries}: {_network_reason(exc)}")
    if isinstance(exc, ReadTimeoutError):
        return StoreError(f"S3 endpoint {endpoint} did not answer in time for {uri}{tries}")
    if isinstance(exc, ProtocolError):
        return StoreError(f"connection to S3 endpoint {endpoint} broke for {uri}{tries}: {_network_reason(exc)}")
    if isinstance(exc, ServerError):
        return StoreError(f"S3 endpoint {endpoint} failed for {uri}{tries}: HTTP {exc.status_code}")
    if isinstance(exc, InvalidResponseError):
        return StoreError(f"S3 endpoint {endpoint} gave an unexpected answer for {uri}{tries}: {exc}")
    if isinstance(exc, ValueError):
        return StoreError(f"refusing {uri}: {exc}")
    return StoreError(f"S3 request to {endpoint} failed for {uri}{tries}: {exc}")


class S3Connection:
    """One lazily created minio client; every call through it is retried and its failures explained."""

    def __init__(self, settings: StoreSettings, backoff_s: float, timeout: urllib3.Timeout) -> None:
        self.settings = settings
        self._backoff_s, self._timeout = backoff_s, timeout
        self._minio: Minio | None = None

    def client(self, uri: str) -> Minio:
        """The minio client, created on first use; StoreError when the S3 settings are missing or invalid."""
        if self._minio is None:
            self._minio = minio_client(self.settings, uri, self._timeout)
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


class S3Reader(io.RawIOBase):
    """A readable stream over one GET response; network failures become StoreError."""

    def __init__(self, s3: S3Connection, response: urllib3.BaseHTTPResponse, uri: str) -> None:
        self._s3, self._response, self._uri = s3, response, uri

    def readable(self) -> bool:
        """Always readable until closed."""
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Read the next bytes of the object into buffer."""
        try:
            return self._response.readinto(buffer)
        except HTTPError as exc:
            raise self._s3.explain(exc, self._uri) from exc

    def close(self) -> None:
        """Close the response and return its connection to the pool."""
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()


class S3Writer(AtomicWriter):
    """Streams to S3 in multipart parts; close() completes the upload, abort() or an exception cancels it."""

    def __init__(self, s3: S3Connection, location: S3Location, uri: str, part_size: int) -> None:
        super().__init__(uri)
        self._s3, self._location, self._part_size = s3, location, part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Part] = []

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        """Buffer data and upload every full part."""
        self._refuse_if_closed()
        self._buffer += data
        self._written += len(data)
        try:
            while len(self._buffer) >= self._part_size:
                self._upload_part(bytes(self._buffer[: self._part_size]))
                del self._buffer[: self._part_size]
        except BaseException as exc:
            self._abort_after(exc)
            raise
        return len(data)

    def close(self) -> None:
        """Commit: one PUT if everything fit in a part, else upload the last part and complete the upload."""
        if self.closed:
            return
        bucket, key = self._location.bucket, self._location.key
        client = self._s3.client(self._uri)
        try:
            if self._upload_id is None:
                data, part_size = bytes(self._buffer), self._part_size
                self._s3.retry(
                    self._uri, lambda: client.put_object(bucket, key, io.BytesIO(data), len(data), part_size=part_size)
                )
            else:
                if self._buffer:
                    self._upload_part(bytes(self._buffer))
                upload_id = self._upload_id
                self._s3.retry(
                    self._uri, lambda: client._complete_multipart_upload(bucket, key, upload_id, self._parts)
                )
        except BaseException as exc:
            self._abort_after(exc)
            raise
        self._buffer.clear()
        super().close()

    def abort(self) -> None:
        """Cancel the multipart upload, if one was started; nothing becomes visible at the URI."""
        if self.closed:
            return
        self._buffer.clear()
        upload_id, self._upload_id = self._upload_id, None
        super().close()
        if upload_id is not None:
            bucket, key = self._location.bucket, self._location.key
            client = self._s3.client(self._uri)
            self._s3.retry(self._uri, lambda: client._abort_multipart_upload(bucket, key, upload_id))

    def _abort_after(self, exc: BaseException) -> None:
        """Abort because of exc; if aborting fails too, note that on exc instead of hiding it."""
        try:
            self.abort()
        except StoreError as abort_error:
            exc.add_note(f"the multipart upload to {self._uri} could not be aborted either: {abort_error}")

    def _upload_part(self, data: bytes) -> None:
        """Upload one part, starting the multipart upload first if needed."""
        bucket, key = self._location.bucket, self._location.key
        client = self._s3.client(self._uri)
        if self._upload_id is None:
            headers = {"Content-Type": "application/octet-stream"}
            self._upload_id = self._s3.retry(self._uri, lambda: client._create_multipart_upload(bucket, key, headers))
        upload_id, number = self._upload_id, len(self._parts) + 1
        etag = self._s3.retry(self._uri, lambda: client._upload_part(bucket, key, data, None, upload_id, number))
        self._parts.append(Part(number, etag))

"""S3 failures: which are worth retrying, and one clear StoreError naming the URI and endpoint for each."""

from __future__ import annotations

from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ProtocolError, ReadTimeoutError, SSLError

from simplear.store.errors import ObjectNotFound, StoreError
from simplear.store.uri import parse_s3

CREDENTIAL_ERRORS = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken"}
TRANSIENT_S3_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}


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

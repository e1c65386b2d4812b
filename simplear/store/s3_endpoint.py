"""The S3 endpoint setting, given as host:port or http(s)://host:port, read as a host and a TLS flag."""

from __future__ import annotations

from urllib.parse import urlsplit

from simplear.config import StoreSettings
from simplear.store.errors import StoreError


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

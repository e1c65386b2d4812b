"""The S3 reader: a stream over one GET response whose network failures become StoreErrors."""

from __future__ import annotations

import io

import urllib3
from urllib3.exceptions import HTTPError

from simplear.store.s3_connection import S3Connection


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

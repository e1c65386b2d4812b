"""The S3 writer: a multipart upload that completes on close() and is cancelled on abort() or an exception."""

from __future__ import annotations

import io

from minio.datatypes import Part

from simplear.store.atomic_writer import AtomicWriter
from simplear.store.errors import StoreError
from simplear.store.s3_connection import S3Connection
from simplear.store.uri import S3Location


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

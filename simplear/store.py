"""One object store addressed by URI: local paths, file:// and s3:// (minio SDK), plus manifest-checked artifacts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar, cast
from urllib.parse import unquote, urlsplit

import certifi
import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ProtocolError, ReadTimeoutError, SSLError

from simplear.config import StoreSettings

MANIFEST = "manifest.json"
ARTIFACT_FORMAT = "simplear-artifact/1"
MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB
COPY_CHUNK = 1 * MiB
TEMP_SUFFIX = ".simplear-tmp"
PARTIAL_SUFFIX = ".simplear-partial"
S3_ENV_HINT = (
    "set SIMPLEAR_S3_ENDPOINT (host:port or http(s)://host:port), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
    "and, for TLS, SIMPLEAR_S3_SECURE=true"
)
CREDENTIAL_ERRORS = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken"}
TRANSIENT_S3_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

T = TypeVar("T")


class StoreError(RuntimeError):
    """A store operation failed for a reason the user can act on; the message names the URI (and S3 endpoint)."""


class ObjectNotFound(StoreError):
    """No object or file exists at the URI."""


class ArtifactNotFound(ObjectNotFound):
    """No complete artifact (no manifest.json) exists at the URI."""


class CorruptArtifact(StoreError):
    """An artifact's manifest is malformed or a downloaded file does not match its size or sha256."""


def is_s3(uri: str) -> bool:
    """True for s3:// URIs."""
    return uri.startswith("s3://")


def join(uri: str, *parts: str) -> str:
    """Join URI segments with '/': join("s3://b/x", "y") == "s3://b/x/y"; works for local paths and file:// too."""
    segments = [part.strip("/") for part in parts if part.strip("/")]
    if not segments:
        return uri
    scheme = SCHEME.match(uri)
    prefix = scheme.group(0) if scheme else ""
    rest = uri[len(prefix) :]
    head = rest.rstrip("/")
    if head:
        return prefix + "/".join([head, *segments])
    return prefix + ("/" if rest.startswith("/") else "") + "/".join(segments)


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key (the key is empty for the bucket root)."""

    bucket: str
    key: str


def _check_key(key: str, uri: str) -> None:
    """Refuse keys that are not plain relative '/'-separated names."""
    if "\\" in key or "\x00" in key:
        raise StoreError(f"refusing {uri}: backslashes and NUL bytes are not allowed in keys")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise StoreError(f"refusing {uri}: empty, '.' and '..' path segments are not allowed in keys")


def parse_s3(uri: str) -> S3Location:
    """Bucket and key of an s3:// URI; a trailing '/' is allowed and dropped."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StoreError(f"refusing {uri}: an S3 URI needs a bucket, as in s3://bucket/key")
    key = key[:-1] if key.endswith("/") else key
    if key:
        _check_key(key, uri)
    return S3Location(bucket, key)


def resolve_local(uri: str) -> Path:
    """Absolute, normalised path of a local path or file:// URI."""
    if not uri:
        raise StoreError("refusing an empty URI")
    if uri.startswith("file://"):
        path = unquote(uri[len("file://") :])
        if not path.startswith("/"):
            raise StoreError(f"refusing {uri}: file:// URIs must be absolute, as in file:///abs/path")
        return Path(os.path.normpath(path))
    if SCHEME.match(uri):
        raise StoreError(f"unsupported URI {uri}: use a local path, file:///abs/path or s3://bucket/key")
    if "\x00" in uri:
        raise StoreError(f"refusing {uri!r}: NUL bytes are not allowed in paths")
    return Path(os.path.abspath(uri))


def canonical(uri: str) -> str:
    """The URI in the form results are reported in: s3://bucket/key, file:///abs, or an absolute path."""
    if is_s3(uri):
        location = parse_s3(uri)
        return f"s3://{location.bucket}/{location.key}" if location.key else f"s3://{location.bucket}"
    path = str(resolve_local(uri))
    return "file://" + path if uri.startswith("file://") else path


def safe_relative_path(path: object, uri: str) -> str:
    """A manifest path that stays inside its artifact, or CorruptArtifact."""
    if not isinstance(path, str) or not path:
        raise CorruptArtifact(f"artifact {uri} lists an empty or non-string path {path!r}; refusing it")
    if path.startswith("/") or "\\" in path or "\x00" in path or path == MANIFEST:
        raise CorruptArtifact(f"artifact {uri} lists an unsafe path {path!r}; refusing it")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise CorruptArtifact(f"artifact {uri} lists a path {path!r} that escapes or is not normalised; refusing it")
    return path


def check_manifest(manifest: object, uri: str) -> dict:
    """The manifest if it is well-formed and every path is safe, else CorruptArtifact."""
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise CorruptArtifact(f"artifact {uri} has a manifest that is not {ARTIFACT_FORMAT!r}")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise CorruptArtifact(f"artifact {uri} has a manifest without a 'files' list")
    seen: set[str] = set()
    for entry in files:
        if not isinstance(entry, dict):
            raise CorruptArtifact(f"artifact {uri} has a manifest entry that is not an object: {entry!r}")
        path = safe_relative_path(entry.get("path"), uri)
        size, digest = entry.get("size"), entry.get("sha256")
        if type(size) is not int or size < 0 or not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise CorruptArtifact(f"artifact {uri} lists {path!r} without a valid size and sha256")
        if path in seen:
            raise CorruptArtifact(f"artifact {uri} lists {path!r} twice")
        seen.add(path)
    return manifest


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


def _is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: network trouble, timeouts, HTTP 5xx, S3 throttling."""
    if isinstance(exc, S3Error):
        return exc.code in TRANSIENT_S3_CODES or exc.response.status >= 500
    if isinstance(exc, ServerError):
        return exc.status_code >= 500
    if isinstance(exc, InvalidResponseError):
        return exc._code >= 500
    return isinstance(exc, HTTPError) and not isinstance(exc, SSLError)


class LocalWriter(io.BufferedIOBase):
    """Writes a temp file beside the target; close() renames it into place, abort() or an exception drops it."""

    def __init__(self, path: Path, uri: str) -> None:
        self._path, self._uri = path, uri
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        except OSError as exc:
            super().close()
            raise StoreError(f"cannot write {uri}: {exc.strerror or exc}") from exc
        self._temp = Path(temp)
        self._file = os.fdopen(fd, "wb")
        self._written = 0

    def writable(self) -> bool:
        """Always writable until closed."""
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        """Append data to the pending file."""
        if self.closed:
            raise ValueError(f"write to closed writer for {self._uri}")
        try:
            written = self._file.write(data)
        except OSError as exc:
            self.abort()
            raise StoreError(f"cannot write {self._uri}: {exc.strerror or exc}") from exc
        self._written += written
        return written

    def tell(self) -> int:
        """Bytes written so far."""
        return self._written

    def close(self) -> None:
        """Commit: fsync the temp file and rename it over the target."""
        if self.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self._path)
        except OSError as exc:
            self.abort()
            raise StoreError(f"cannot write {self._uri}: {exc.strerror or exc}") from exc
        super().close()

    def abort(self) -> None:
        """Drop everything written; the target is left as it was."""
        if self.closed:
            return
        self._file.close()
        self._temp.unlink(missing_ok=True)
        super().close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        self.abort()


class S3Writer(io.BufferedIOBase):
    """Streams to S3 in multipart parts; close() completes the upload, abort() or an exception cancels it."""

    def __init__(self, store: Store, location: S3Location, uri: str, part_size: int) -> None:
        self._store, self._location, self._uri, self._part_size = store, location, uri, part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Part] = []
        self._written = 0

    def writable(self) -> bool:
        """Always writable until closed."""
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        """Buffer data and upload every full part."""
        if self.closed:
            raise ValueError(f"write to closed writer for {self._uri}")
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

    def tell(self) -> int:
        """Bytes written so far."""
        return self._written

    def close(self) -> None:
        """Commit: one PUT if everything fit in a part, else upload the last part and complete the upload."""
        if self.closed:
            return
        bucket, key = self._location.bucket, self._location.key
        client = self._store._client(self._uri)
        try:
            if self._upload_id is None:
                data, part_size = bytes(self._buffer), self._part_size
                self._store._retry(
                    self._uri, lambda: client.put_object(bucket, key, io.BytesIO(data), len(data), part_size=part_size)
                )
            else:
                if self._buffer:
                    self._upload_part(bytes(self._buffer))
                upload_id = self._upload_id
                self._store._retry(
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
            client = self._store._client(self._uri)
            self._store._retry(self._uri, lambda: client._abort_multipart_upload(bucket, key, upload_id))

    def _abort_after(self, exc: BaseException) -> None:
        """Abort because of exc; if aborting fails too, note that on exc instead of hiding it."""
        try:
            self.abort()
        except StoreError as abort_error:
            exc.add_note(f"the multipart upload to {self._uri} could not be aborted either: {abort_error}")

    def _upload_part(self, data: bytes) -> None:
        """Upload one part, starting the multipart upload first if needed."""
        bucket, key = self._location.bucket, self._location.key
        client = self._store._client(self._uri)
        if self._upload_id is None:
            headers = {"Content-Type": "application/octet-stream"}
            self._upload_id = self._store._retry(
                self._uri, lambda: client._create_multipart_upload(bucket, key, headers)
            )
        upload_id, number = self._upload_id, len(self._parts) + 1
        etag = self._store._retry(
            self._uri, lambda: client._upload_part(bucket, key, data, None, upload_id, number)
        )
        self._parts.append(Part(number, etag))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._abort_after(exc)

    def __del__(self) -> None:
        self.abort()


class S3Reader(io.RawIOBase):
    """A readable stream over one GET response; network failures become StoreError."""

    def __init__(self, store: Store, response: urllib3.BaseHTTPResponse, uri: str) -> None:
        self._store, self._response, self._uri = store, response, uri

    def readable(self) -> bool:
        """Always readable until closed."""
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Read the next bytes of the object into buffer."""
        try:
            return self._response.readinto(buffer)
        except HTTPError as exc:
            raise self._store._explain(exc, self._uri) from exc

    def close(self) -> None:
        """Close the response and return its connection to the pool."""
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()


class Store:
    """Reads and writes bytes, files and manifest-checked artifacts at local, file:// and s3:// URIs."""

    def __init__(
        self,
        settings: StoreSettings | None = None,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        attempts: int = 4,
        backoff_s: float = 0.2,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum multipart part size {MIN_PART_SIZE}")
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.settings = StoreSettings.from_env() if settings is None else settings
        self.part_size = part_size
        self._attempts, self._backoff_s = attempts, backoff_s
        self._timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._minio: Minio | None = None

    # ---- bytes and streams

    def read(self, uri: str) -> bytes:
        """The whole object or file at uri."""
        if not is_s3(uri):
            path = resolve_local(uri)
            return self._local(uri, path.read_bytes)
        location = self._object(uri)
        client = self._client(uri)

        def get() -> bytes:
            """GET the object and read it to the end."""
            response = client.get_object(location.bucket, location.key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._retry(uri, get)

    def write(self, uri: str, data: bytes) -> None:
        """Replace the object or file at uri with data, atomically."""
        with self.open(uri, "wb") as f:
            f.write(data)

    def open(self, uri: str, mode: str = "rb") -> BinaryIO:
        """A streaming reader ("rb") or an atomic streaming writer ("wb", committed on close, dropped on error)."""
        if mode not in ("rb", "wb"):
            raise ValueError(f"mode must be 'rb' or 'wb', got {mode!r}")
        if not is_s3(uri):
            path = resolve_local(uri)
            if mode == "wb":
                return cast(BinaryIO, LocalWriter(path, uri))
            return cast(BinaryIO, self._local(uri, lambda: path.open("rb")))
        location = self._object(uri)
        if mode == "wb":
            self._client(uri)
            return cast(BinaryIO, S3Writer(self, location, uri, self.part_size))
        client = self._client(uri)
        response = self._retry(uri, lambda: client.get_object(location.bucket, location.key))
        return cast(BinaryIO, io.BufferedReader(S3Reader(self, response, uri), buffer_size=COPY_CHUNK))

    def exists(self, uri: str) -> bool:
        """True when an object or file exists at uri."""
        if not is_s3(uri):
            return resolve_local(uri).is_file()
        location = self._object(uri)
        client = self._client(uri)
        try:
            self._retry(uri, lambda: client.stat_object(location.bucket, location.key))
        except ObjectNotFound:
            return False
        return True

    def list(self, uri: str, recursive: bool = True) -> list[str]:
        """Sorted URIs of the objects or files under the directory-like prefix uri ([] when there are none)."""
        base = canonical(uri)
        if not is_s3(uri):
            return [join(base, rel) for rel in self._list_local(resolve_local(uri), recursive)]
        location = parse_s3(uri)
        prefix = location.key + "/" if location.key else ""
        client = self._client(uri)

        def names() -> list[str]:
            """Keys of the objects under the prefix."""
            objects = client.list_objects(location.bucket, prefix=prefix, recursive=recursive)
            return [o.object_name for o in objects if not o.is_dir and not o.object_name.endswith("/")]

        return sorted(f"s3://{location.bucket}/{name}" for name in self._retry(uri, names))

    def delete(self, uri: str) -> None:
        """Delete one object or file; a missing one is not an error."""
        if not is_s3(uri):
            path = resolve_local(uri)
            self._local(uri, lambda: path.unlink(missing_ok=True))
            return
        location = self._object(uri)
        client = self._client(uri)
        self._retry(uri, lambda: client.remove_object(location.bucket, location.key))

    # ---- files

    def upload_file(self, local_path: str | Path, uri: str) -> None:
        """Copy a local file to uri (streamed, multipart on S3, atomic locally)."""
        self._copy_local_file(Path(local_path), uri)

    def download_file(self, uri: str, local_path: str | Path) -> Path:
        """Copy the object at uri to a local file, atomically; returns the file's absolute path."""
        target = Path(os.path.abspath(local_path))
        with self.open(uri, "rb") as source, LocalWriter(target, str(target)) as sink:
            shutil.copyfileobj(source, sink, COPY_CHUNK)
        return target

    # ---- artifacts

    def put_artifact(self, local_dir: str | Path, uri: str) -> dict:
        """Upload every file under local_dir (sorted), then manifest.json last; returns the manifest."""
        root = Path(local_dir)
        if not root.is_dir():
            raise StoreError(f"cannot upload artifact to {uri}: {root} is not a directory")
        manifest_uri = join(uri, MANIFEST)
        self.delete(manifest_uri)
        files = []
        for rel in self._list_local(root, recursive=True):
            if rel == MANIFEST:
                continue
            size, sha256 = self._copy_local_file(root / rel, join(uri, rel))
            files.append({"path": rel, "size": size, "sha256": sha256})
        manifest = {"format": ARTIFACT_FORMAT, "files": files}
        self.write(manifest_uri, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        return manifest

    def get_artifact(self, uri: str, local_dir: str | Path) -> dict:
        """Download a complete artifact into local_dir (absent or empty), verifying every size and sha256."""
        manifest = self.read_manifest(uri)
        target = Path(os.path.abspath(local_dir))
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise StoreError(f"cannot download artifact {uri} into {target}: it exists and is not an empty directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX))
        try:
            for entry in manifest["files"]:
                self._download_checked(uri, entry, staging)
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            os.replace(staging, target)
        except OSError as exc:
            raise StoreError(f"cannot download artifact {uri} into {target}: {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def artifact_exists(self, uri: str) -> bool:
        """True only when the artifact's manifest.json exists."""
        return self.exists(join(uri, MANIFEST))

    def read_manifest(self, uri: str) -> dict:
        """The checked manifest of the artifact at uri; ArtifactNotFound when it has none."""
        manifest_uri = join(uri, MANIFEST)
        try:
            raw = self.read(manifest_uri)
        except ObjectNotFound as exc:
            raise ArtifactNotFound(f"no complete artifact at {uri}: {manifest_uri} does not exist") from exc
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            raise CorruptArtifact(f"artifact {uri} has a manifest that is not JSON: {exc}") from exc
        return check_manifest(manifest, uri)

    def list_artifacts(self, uri: str) -> list[str]:
        """Sorted URIs of the complete artifacts (those with a manifest) directly under uri."""
        base = canonical(uri)
        if not is_s3(uri):
            root = resolve_local(uri)
            children = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            children = [name for name in children if not name.endswith(PARTIAL_SUFFIX)]
            return [join(base, name) for name in children if (root / name / MANIFEST).is_file()]
        location = parse_s3(uri)
        prefix = location.key + "/" if location.key else ""
        client = self._client(uri)

        def children() -> list[str]:
            """Names of the sub-prefixes directly under the prefix."""
            objects = client.list_objects(location.bucket, prefix=prefix, recursive=False)
            return [o.object_name[len(prefix) :].rstrip("/") for o in objects if o.is_dir]

        candidates = [join(base, name) for name in sorted(self._retry(uri, children))]
        return [candidate for candidate in candidates if self.artifact_exists(candidate)]

    # ---- helpers

    def _copy_local_file(self, source: Path, uri: str) -> tuple[int, str]:
        """Stream a local file to uri; returns its size and sha256."""
        digest, size = hashlib.sha256(), 0
        try:
            with source.open("rb") as f, self.open(uri, "wb") as sink:
                while chunk := f.read(COPY_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise StoreError(f"cannot upload {source} to {uri}: {exc.strerror or exc}") from exc
        return size, digest.hexdigest()

    def _download_checked(self, uri: str, entry: dict, staging: Path) -> None:
        """Download one manifest entry into staging, raising CorruptArtifact on a size or sha256 mismatch."""
        rel = entry["path"]
        file_uri = join(uri, rel)
        destination = staging / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        try:
            with self.open(file_uri, "rb") as source, destination.open("wb") as sink:
                while chunk := source.read(COPY_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
        except ObjectNotFound as exc:
            raise CorruptArtifact(f"artifact {uri} is incomplete: {file_uri} is in its manifest but missing") from exc
        expected_size, expected_sha256 = entry["size"], entry["sha256"]
        if size != expected_size:
            raise CorruptArtifact(f"artifact {uri} is corrupt: {file_uri} has {size} bytes, manifest says {expected_size}")
        if digest.hexdigest() != expected_sha256:
            raise CorruptArtifact(
                f"artifact {uri} is corrupt: {file_uri} has sha256 {digest.hexdigest()}, manifest says {expected_sha256}"
            )

    @staticmethod
    def _list_local(root: Path, recursive: bool) -> list[str]:
        """Sorted POSIX paths, relative to root, of its files (dangling links included), minus in-progress temps."""
        if not root.is_dir():
            return []
        candidates = root.rglob("*") if recursive else root.iterdir()
        relative = [p.relative_to(root) for p in candidates if p.is_file() or (p.is_symlink() and not p.exists())]
        return sorted(
            rel.as_posix()
            for rel in relative
            if not rel.name.endswith(TEMP_SUFFIX) and not any(part.endswith(PARTIAL_SUFFIX) for part in rel.parts)
        )

    @staticmethod
    def _local(uri: str, action: Callable[[], T]) -> T:
        """Run a local file operation, turning OS errors into StoreError naming uri."""
        try:
            return action()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"no file at {uri}") from exc
        except OSError as exc:
            raise StoreError(f"cannot access {uri}: {exc.strerror or exc}") from exc

    @staticmethod
    def _object(uri: str) -> S3Location:
        """The location of a single object (the key must not be empty)."""
        location = parse_s3(uri)
        if not location.key or uri.endswith("/"):
            raise StoreError(f"refusing {uri}: it names a bucket or prefix, not an object")
        return location

    def _client(self, uri: str) -> Minio:
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
        host, secure = _endpoint(settings)
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

    def _retry(self, uri: str, call: Callable[[], T]) -> T:
        """Run an S3 call, retrying transient failures with exponential backoff; other failures -> StoreError."""
        attempt = 1
        while True:
            try:
                return call()
            except (S3Error, ServerError, InvalidResponseError, HTTPError, ValueError) as exc:
                if not _is_transient(exc) or attempt == self._attempts:
                    raise self._explain(exc, uri, attempt) from exc
            time.sleep(self._backoff_s * 2 ** (attempt - 1))
            attempt += 1

    def _explain(self, exc: Exception, uri: str, attempts: int = 1) -> StoreError:
        """A StoreError that says what went wrong with uri at the S3 endpoint and what to check."""
        endpoint = self.settings.endpoint
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
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


def _endpoint(settings: StoreSettings) -> tuple[str, bool]:
    """host:port and TLS flag from an endpoint given as host:port or http(s)://host:port (a scheme wins)."""
    raw = (settings.endpoint or "").strip()
    secure = settings.secure
    host = raw
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise StoreError(
                f"invalid S3 endpoint {raw!r} (SIMPLEAR_S3_ENDPOINT): use host:port or http(s)://host:port"
            )
        secure, host = parts.scheme == "https", parts.netloc
    if not host or "/" in host:
        raise StoreError(f"invalid S3 endpoint {raw!r} (SIMPLEAR_S3_ENDPOINT): use host:port or http(s)://host:port")
    return host, secure

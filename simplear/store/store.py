"""The Store facade: bytes, streams, files and artifacts at a local path, file:// or s3:// URI."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import BinaryIO, cast

import urllib3
from pydantic import ValidationError

from simplear.config import StoreSettings
from simplear.store import artifacts
from simplear.store.errors import ObjectNotFound, StoreError
from simplear.store.hashed_copy import upload_hashed
from simplear.store.local_files import PARTIAL_SUFFIX, list_local, run_local
from simplear.store.local_writer import LocalWriter
from simplear.store.manifest import MANIFEST
from simplear.store.s3_connection import S3Connection
from simplear.store.s3_reader import S3Reader
from simplear.store.s3_writer import S3Writer
from simplear.store.sizes import COPY_CHUNK, DEFAULT_PART_SIZE, MIN_PART_SIZE
from simplear.store.uri import canonical, is_s3, join, parse_s3, parse_s3_object, resolve_local


def _settings_from_env() -> StoreSettings:
    """The S3 settings of the environment; StoreError naming the variable that holds an invalid value."""
    try:
        return StoreSettings.from_env()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise StoreError(f"invalid S3 settings in the environment ({problems}); "
                         "SIMPLEAR_S3_RETRY_SECONDS takes a number of seconds") from None


class Store:
    """Reads and writes bytes, files and manifest-checked artifacts at local, file:// and s3:// URIs."""

    def __init__(
        self,
        settings: StoreSettings | None = None,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        backoff_s: float = 0.2,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum multipart part size {MIN_PART_SIZE}")
        self.settings = _settings_from_env() if settings is None else settings
        self.part_size = part_size
        timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._s3 = S3Connection(self.settings, backoff_s, timeout)

    # ---- bytes and streams

    def read(self, uri: str) -> bytes:
        """The whole object or file at uri."""
        if not is_s3(uri):
            path = resolve_local(uri)
            return run_local(uri, path.read_bytes)
        location = parse_s3_object(uri)
        client = self._s3.client(uri)

        def get() -> bytes:
            """GET the object and read it to the end."""
            response = client.get_object(location.bucket, location.key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._s3.retry(uri, get)

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
            return cast(BinaryIO, run_local(uri, lambda: path.open("rb")))
        location = parse_s3_object(uri)
        if mode == "wb":
            self._s3.client(uri)
            return cast(BinaryIO, S3Writer(self._s3, location, uri, self.part_size))
        client = self._s3.client(uri)
        response = self._s3.retry(uri, lambda: client.get_object(location.bucket, location.key))
        return cast(BinaryIO, io.BufferedReader(S3Reader(self._s3, response, uri), buffer_size=COPY_CHUNK))

    def exists(self, uri: str) -> bool:
        """True when an object or file exists at uri."""
        if not is_s3(uri):
            return resolve_local(uri).is_file()
        location = parse_s3_object(uri)
        client = self._s3.client(uri)
        try:
            self._s3.retry(uri, lambda: client.stat_object(location.bucket, location.key))
        except ObjectNotFound:
            return False
        return True

    def list(self, uri: str, recursive: bool = True) -> list[str]:
        """Sorted URIs of the objects or files under the directory-like prefix uri ([] when there are none)."""
        base = canonical(uri)
        if not is_s3(uri):
            return [join(base, rel) for rel in list_local(resolve_local(uri), recursive)]
        location = parse_s3(uri)
        prefix = location.key + "/" if location.key else ""
        client = self._s3.client(uri)

        def names() -> list[str]:
            """Keys of the objects under the prefix."""
            objects = client.list_objects(location.bucket, prefix=prefix, recursive=recursive)
            return [o.object_name for o in objects if not o.is_dir and not o.object_name.endswith("/")]

        return sorted(f"s3://{location.bucket}/{name}" for name in self._s3.retry(uri, names))

    def delete(self, uri: str) -> None:
        """Delete one object or file; a missing one is not an error."""
        if not is_s3(uri):
            path = resolve_local(uri)
            run_local(uri, lambda: path.unlink(missing_ok=True))
            return
        location = parse_s3_object(uri)
        client = self._s3.client(uri)
        self._s3.retry(uri, lambda: client.remove_object(location.bucket, location.key))

    # ---- files

    def upload_file(self, local_path: str | Path, uri: str) -> None:
        """Copy a local file to uri (streamed, multipart on S3, atomic locally)."""
        upload_hashed(self, Path(local_path), uri)

    def download_file(self, uri: str, local_path: str | Path) -> Path:
        """Copy the object at uri to a local file, atomically; returns the file's absolute path."""
        target = Path(os.path.abspath(local_path))
        with self.open(uri, "rb") as source, LocalWriter(target, str(target)) as sink:
            shutil.copyfileobj(source, sink, COPY_CHUNK)
        return target

    # ---- artifacts

    def put_artifact(self, local_dir: str | Path, uri: str) -> dict:
        """Upload every file under local_dir (sorted), then manifest.json last; returns the manifest."""
        return artifacts.put_artifact(self, local_dir, uri)

    def get_artifact(self, uri: str, local_dir: str | Path) -> dict:
        """Download a complete artifact into local_dir (absent or empty), verifying every size and sha256."""
        return artifacts.get_artifact(self, uri, local_dir)

    def artifact_exists(self, uri: str) -> bool:
        """True only when the artifact's manifest.json exists."""
        return self.exists(join(uri, MANIFEST))

    def read_manifest(self, uri: str) -> dict:
        """The checked manifest of the artifact at uri; ArtifactNotFound when it has none."""
        return artifacts.read_manifest(self, uri)

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
        client = self._s3.client(uri)

        def children() -> list[str]:
            """Names of the sub-prefixes directly under the prefix."""
            objects = client.list_objects(location.bucket, prefix=prefix, recursive=False)
            return [o.object_name[len(prefix) :].rstrip("/") for o in objects if o.is_dir]

        candidates = [join(base, name) for name in sorted(self._s3.retry(uri, children))]
        return [candidate for candidate in candidates if self.artifact_exists(candidate)]

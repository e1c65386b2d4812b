"""The Store facade: bytes, streams, files and manifest-checked artifacts at a local path, file:// or s3:// URI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

import urllib3

from simplear.config import StoreSettings
from simplear.store.errors import ArtifactNotFound, CorruptArtifact, ObjectNotFound, SettingsChanged, StoreError
from simplear.store.local import PARTIAL_SUFFIX, LocalWriter, held_temp, list_local, run_local
from simplear.store.s3 import DEFAULT_PART_SIZE, MIN_PART_SIZE, MiB, S3Connection, S3Reader, S3Writer, settings_from_env
from simplear.store.uri import canonical, is_s3, join, parse_s3, parse_s3_object, resolve_local

COPY_CHUNK = 1 * MiB
MANIFEST = "manifest.json"
ARTIFACT_FORMAT = "simplear-artifact/1"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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


def json_bytes(value: object) -> bytes:
    """The stored form of a manifest or a run's settings: deterministic, indented JSON."""
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def copy_hashed(source: BinaryIO, sink: BinaryIO) -> tuple[int, str]:
    """Copy source to sink in chunks; returns the bytes copied and their sha256."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(COPY_CHUNK):
        digest.update(chunk)
        sink.write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


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
        self.settings = settings_from_env() if settings is None else settings
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

    def upload_file(self, local_path: str | Path, uri: str) -> tuple[int, str]:
        """Copy a local file to uri (streamed, multipart on S3, atomic locally); returns its size and sha256."""
        try:
            with Path(local_path).open("rb") as source, self.open(uri, "wb") as sink:
                return copy_hashed(source, sink)
        except OSError as exc:
            raise StoreError(f"cannot upload {local_path} to {uri}: {exc.strerror or exc}") from exc

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
        for rel in list_local(root, recursive=True):
            if rel == MANIFEST:
                continue
            size, sha256 = self.upload_file(root / rel, join(uri, rel))
            files.append({"path": rel, "size": size, "sha256": sha256})
        manifest = {"format": ARTIFACT_FORMAT, "files": files}
        self.write(manifest_uri, json_bytes(manifest))
        return manifest

    def get_artifact(self, uri: str, local_dir: str | Path) -> dict:
        """Download a complete artifact into local_dir (absent or empty), verifying every size and sha256.

        Files arrive in a locked staging folder beside local_dir, renamed into place when all are checked; staging
        folders that dead downloads left for the same local_dir are removed first.
        """
        manifest = self.read_manifest(uri)
        target = Path(os.path.abspath(local_dir))
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise StoreError(f"cannot download artifact {uri} into {target}: it exists and is not an empty directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        lock, staging = held_temp(target, PARTIAL_SUFFIX, folder=True)
        try:
            for entry in manifest["files"]:
                self._download_checked(uri, entry, staging)
            (staging / MANIFEST).write_bytes(json_bytes(manifest))
            os.replace(staging, target)
        except OSError as exc:
            raise StoreError(f"cannot download artifact {uri} into {target}: {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            os.close(lock)
        return manifest

    @contextmanager
    def local_dir(self, uri: str | Path, scratch: str | Path | None = None) -> Iterator[Path]:
        """A local directory to read the artifact at uri from: the path itself when local, else a verified download.

        The download lands in a temporary folder (under `scratch` when given) removed when the block exits; an s3://
        artifact without a manifest is refused with ArtifactNotFound.
        """
        uri = str(uri)
        if not is_s3(uri):
            yield resolve_local(uri)
            return
        workdir = Path(tempfile.mkdtemp(prefix="simplear-artifact-", dir=scratch))
        try:
            self.get_artifact(uri, workdir / "artifact")
            yield workdir / "artifact"
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

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
        client = self._s3.client(uri)

        def children() -> list[str]:
            """Names of the sub-prefixes directly under the prefix."""
            objects = client.list_objects(location.bucket, prefix=prefix, recursive=False)
            return [o.object_name[len(prefix) :].rstrip("/") for o in objects if o.is_dir]

        candidates = [join(base, name) for name in sorted(self._s3.retry(uri, children))]
        return [candidate for candidate in candidates if self.artifact_exists(candidate)]

    def _download_checked(self, uri: str, entry: dict, staging: Path) -> None:
        """Download one manifest entry into staging, raising CorruptArtifact on a size or sha256 mismatch."""
        rel = entry["path"]
        file_uri = join(uri, rel)
        destination = staging / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.open(file_uri, "rb") as source, destination.open("wb") as sink:
                size, sha256 = copy_hashed(source, sink)
        except ObjectNotFound as exc:
            raise CorruptArtifact(f"artifact {uri} is incomplete: {file_uri} is in its manifest but missing") from exc
        expected_size, expected_sha256 = entry["size"], entry["sha256"]
        if size != expected_size:
            raise CorruptArtifact(
                f"artifact {uri} is corrupt: {file_uri} has {size} bytes, manifest says {expected_size}"
            )
        if sha256 != expected_sha256:
            raise CorruptArtifact(
                f"artifact {uri} is corrupt: {file_uri} has sha256 {sha256}, manifest says {expected_sha256}"
            )


def claim_settings(store: Store, root: str, file_name: str, settings: dict, command: str, flag: str) -> bytes:
    """The settings file of the run at root, written now if absent; SettingsChanged naming each differing setting.

    `settings` must be JSON-like (what json.loads gives back), so the comparison sees what the file holds.
    """
    uri = join(root, file_name)
    try:
        stored = store.read(uri)
    except ObjectNotFound:
        data = json_bytes(settings)
        store.write(uri, data)
        return data
    previous = json.loads(stored)
    changed = sorted(key for key in settings.keys() | previous.keys() if settings.get(key) != previous.get(key))
    if changed:
        details = ", ".join(f"{key}: {previous.get(key)!r} there, {settings.get(key)!r} now" for key in changed)
        raise SettingsChanged(
            f"{root} holds a simplear {command} run with other settings ({details}); "
            f"resume it with the same settings or choose a new {flag}"
        )
    return stored

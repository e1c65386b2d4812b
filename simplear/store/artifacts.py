"""Artifacts: directories uploaded file by file with manifest.json last, downloaded whole and verified."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from simplear.store.errors import ArtifactNotFound, CorruptArtifact, ObjectNotFound, StoreError
from simplear.store.hashed_copy import copy_hashed, upload_hashed
from simplear.store.leftovers import held_temp
from simplear.store.local_files import PARTIAL_SUFFIX, list_local
from simplear.store.manifest import ARTIFACT_FORMAT, MANIFEST, check_manifest
from simplear.store.uri import join

if TYPE_CHECKING:
    from simplear.store.store import Store


def put_artifact(store: Store, local_dir: str | Path, uri: str) -> dict:
    """Upload every file under local_dir (sorted), then manifest.json last; returns the manifest."""
    root = Path(local_dir)
    if not root.is_dir():
        raise StoreError(f"cannot upload artifact to {uri}: {root} is not a directory")
    manifest_uri = join(uri, MANIFEST)
    store.delete(manifest_uri)
    files = []
    for rel in list_local(root, recursive=True):
        if rel == MANIFEST:
            continue
        size, sha256 = upload_hashed(store, root / rel, join(uri, rel))
        files.append({"path": rel, "size": size, "sha256": sha256})
    manifest = {"format": ARTIFACT_FORMAT, "files": files}
    store.write(manifest_uri, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def get_artifact(store: Store, uri: str, local_dir: str | Path) -> dict:
    """Download a complete artifact into local_dir (absent or empty), verifying every size and sha256.

    Files arrive in a locked staging folder beside local_dir, renamed into place when all are checked; staging
    folders that dead downloads left for the same local_dir are removed first.
    """
    manifest = store.read_manifest(uri)
    target = Path(os.path.abspath(local_dir))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StoreError(f"cannot download artifact {uri} into {target}: it exists and is not an empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    lock, staging = held_temp(target, PARTIAL_SUFFIX, folder=True)
    try:
        for entry in manifest["files"]:
            _download_checked(store, uri, entry, staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(staging, target)
    except OSError as exc:
        raise StoreError(f"cannot download artifact {uri} into {target}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)
    return manifest


def read_manifest(store: Store, uri: str) -> dict:
    """The checked manifest of the artifact at uri; ArtifactNotFound when it has none."""
    manifest_uri = join(uri, MANIFEST)
    try:
        raw = store.read(manifest_uri)
    except ObjectNotFound as exc:
        raise ArtifactNotFound(f"no complete artifact at {uri}: {manifest_uri} does not exist") from exc
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise CorruptArtifact(f"artifact {uri} has a manifest that is not JSON: {exc}") from exc
    return check_manifest(manifest, uri)


def _download_checked(store: Store, uri: str, entry: dict, staging: Path) -> None:
    """Download one manifest entry into staging, raising CorruptArtifact on a size or sha256 mismatch."""
    rel = entry["path"]
    file_uri = join(uri, rel)
    destination = staging / rel
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with store.open(file_uri, "rb") as source, destination.open("wb") as sink:
            size, sha256 = copy_hashed(source, sink)
    except ObjectNotFound as exc:
        raise CorruptArtifact(f"artifact {uri} is incomplete: {file_uri} is in its manifest but missing") from exc
    expected_size, expected_sha256 = entry["size"], entry["sha256"]
    if size != expected_size:
        raise CorruptArtifact(f"artifact {uri} is corrupt: {file_uri} has {size} bytes, manifest says {expected_size}")
    if sha256 != expected_sha256:
        raise CorruptArtifact(
            f"artifact {uri} is corrupt: {file_uri} has sha256 {sha256}, manifest says {expected_sha256}"
        )

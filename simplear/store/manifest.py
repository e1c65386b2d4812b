"""The artifact manifest: its name, its format, and the checks that make it safe to follow."""

from __future__ import annotations

import re

from simplear.store.errors import CorruptArtifact

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

"""One object store addressed by URI: local paths, file:// and s3:// (minio SDK), plus manifest-checked artifacts."""

from simplear.store.errors import ArtifactNotFound, CorruptArtifact, ObjectNotFound, SettingsChanged, StoreError
from simplear.store.local import PARTIAL_SUFFIX, TEMP_SUFFIX, LocalWriter
from simplear.store.s3 import DEFAULT_PART_SIZE, MIN_PART_SIZE, MiB, S3Reader, S3Writer
from simplear.store.store import (
    ARTIFACT_FORMAT,
    COPY_CHUNK,
    MANIFEST,
    Store,
    check_manifest,
    claim_settings,
    safe_relative_path,
)
from simplear.store.uri import S3Location, canonical, is_s3, join, parse_s3, resolve_local

__all__ = [
    "ARTIFACT_FORMAT",
    "COPY_CHUNK",
    "DEFAULT_PART_SIZE",
    "MANIFEST",
    "MIN_PART_SIZE",
    "PARTIAL_SUFFIX",
    "TEMP_SUFFIX",
    "ArtifactNotFound",
    "CorruptArtifact",
    "LocalWriter",
    "MiB",
    "ObjectNotFound",
    "S3Location",
    "S3Reader",
    "S3Writer",
    "SettingsChanged",
    "Store",
    "StoreError",
    "canonical",
    "check_manifest",
    "claim_settings",
    "is_s3",
    "join",
    "parse_s3",
    "resolve_local",
    "safe_relative_path",
]

"""One object store addressed by URI: local paths, file:// and s3:// (minio SDK), plus manifest-checked artifacts."""

from simplear.store.errors import ArtifactNotFound, CorruptArtifact, ObjectNotFound, SettingsChanged, StoreError
from simplear.store.local_files import PARTIAL_SUFFIX, TEMP_SUFFIX
from simplear.store.local_writer import LocalWriter
from simplear.store.manifest import ARTIFACT_FORMAT, MANIFEST, check_manifest, safe_relative_path
from simplear.store.run_settings import claim_settings
from simplear.store.s3_reader import S3Reader
from simplear.store.s3_writer import S3Writer
from simplear.store.sizes import COPY_CHUNK, DEFAULT_PART_SIZE, MIN_PART_SIZE, MiB
from simplear.store.store import Store
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

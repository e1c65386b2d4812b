"""Store URIs: telling s3:// from local, joining segments, parsing buckets and keys, resolving local paths."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from simplear.store.errors import StoreError

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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


def parse_s3_object(uri: str) -> S3Location:
    """The location of a single object (the key must not be empty)."""
    location = parse_s3(uri)
    if not location.key or uri.endswith("/"):
        raise StoreError(f"refusing {uri}: it names a bucket or prefix, not an object")
    return location


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

"""`simplear upload`: a local folder into the store as a complete artifact (files checked, manifest.json last)."""

from __future__ import annotations

import argparse
from pathlib import Path

from simplear.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `simplear upload`."""
    parser.add_argument("source", type=Path, help="local folder: a Qwen2.5 text LM, a CLIP model, a checkpoint")
    parser.add_argument("uri", help="store URI of the artifact (s3://bucket/key or a directory)")


def run(args: argparse.Namespace) -> int:
    """Upload the folder; print the manifest's file count and size."""
    if not args.source.is_dir():
        raise SystemExit(f"simplear upload: {args.source} is not a folder")
    manifest = Store().put_artifact(args.source, args.uri)
    size = sum(entry["size"] for entry in manifest["files"])
    print(f"{args.uri}: {len(manifest['files'])} files, {size / 1e6:.1f} MB, complete (manifest.json written last)")
    return 0

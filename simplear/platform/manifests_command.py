"""`simplear manifests`: write the reference manifests of every stage, generated from a PlatformConfig."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from simplear.platform.config import PlatformConfig
from simplear.platform.default_platform import CHART, default_platform_config
from simplear.platform.reference_yaml import HEADER, reference_yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--out, and where the platform config comes from (the chart's defaults unless --platform-config)."""
    parser.add_argument("--out", type=Path, required=True, help="folder for the YAML files (e.g. k8s/)")
    parser.add_argument("--release", default=CHART, help="Helm release whose Secret, MinIO and names to use")
    parser.add_argument("--namespace", help="namespace of the release (default: endpoints relative to the pod's)")
    parser.add_argument("--platform-config", type=Path,
                        help="platform.json (the chart's <release>-platform ConfigMap) instead of the chart defaults")


def platform_config_from_args(args: argparse.Namespace) -> PlatformConfig:
    """The --platform-config file's config, or the chart's defaults for --release / --namespace."""
    if args.platform_config is None:
        return default_platform_config(args.release, args.namespace)
    return PlatformConfig.model_validate_json(args.platform_config.read_text())


def write_reference(out: Path, files: dict[str, str]) -> list[Path]:
    """Write the files under out, removing generated YAML files no longer produced; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.glob("*.yaml")):
        if stale.name not in files and stale.read_text().startswith(HEADER):
            stale.unlink()
    written = []
    for name, text in files.items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def run(args: argparse.Namespace) -> int:
    """Write the reference manifests; 2 when the platform config is unreadable or invalid."""
    try:
        config = platform_config_from_args(args)
    except (OSError, ValidationError) as exc:
        print(f"simplear manifests: cannot use platform config {args.platform_config}: {exc}", file=sys.stderr)
        return 2
    for path in write_reference(args.out, reference_yaml(config, args.release)):
        print(path)
    return 0

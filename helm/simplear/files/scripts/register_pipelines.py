"""Register each compiled pipeline with Kubeflow Pipelines: a new pipeline, or a new version of it."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import kfp

TOKEN_PATH = Path("/var/run/secrets/kubeflow/pipelines/token")


def version_name(package: Path, chart_version: str) -> str:
    """<chart version>-<first 12 hex digits of the package's sha256>: same content, same version."""
    return f"{chart_version}-{hashlib.sha256(package.read_bytes()).hexdigest()[:12]}"


def has_version(client: kfp.Client, pipeline_id: str, name: str) -> bool:
    """Whether the pipeline already has a version called name."""
    name_filter = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    response = client.list_pipeline_versions(pipeline_id, page_size=1, filter=name_filter)
    return bool(response.pipeline_versions)


def register(client: kfp.Client, package: Path, chart_version: str, namespace: str | None) -> None:
    """Upload package as pipeline <file stem>, or as a new version when the pipeline exists."""
    pipeline = package.stem
    version = version_name(package, chart_version)
    pipeline_id = client.get_pipeline_id(pipeline)
    if pipeline_id is None:
        client.upload_pipeline(str(package), pipeline_name=pipeline, namespace=namespace)
        print(f"pipeline {pipeline} registered", flush=True)
    elif has_version(client, pipeline_id, version):
        print(f"pipeline {pipeline} already has version {version}", flush=True)
    else:
        client.upload_pipeline_version(str(package), pipeline_version_name=version, pipeline_id=pipeline_id)
        print(f"pipeline {pipeline}: version {version} registered", flush=True)


def main(directory: str) -> int:
    """Register every *.yaml under directory with the API at KFP_ENDPOINT."""
    packages = sorted(Path(directory).glob("*.yaml"))
    if not packages:
        print(f"no compiled pipelines under {directory}", file=sys.stderr)
        return 1
    token = TOKEN_PATH.read_text().strip() if TOKEN_PATH.exists() else None
    client = kfp.Client(host=os.environ["KFP_ENDPOINT"], existing_token=token)
    for package in packages:
        register(client, package, os.environ["CHART_VERSION"], os.environ.get("KFP_NAMESPACE") or None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Start a compiled pipeline on the cluster, its pods running as the chart's pipeline ServiceAccount.

Kubeflow Pipelines chooses a run's ServiceAccount when the run is created (the compiled YAML cannot carry it), so
runs go through here (or the UI's "Service account" field): `python -m pipelines.submit simplear-lifecycle
--host http://ml-pipeline.kubeflow:8888 --arg preset=tiny`.
"""

import argparse
import json
import sys
from typing import Any

from simplear.compiled_pipelines import compiled_pipeline
from simplear.platform.default_platform import chart_fullname


def pipeline_service_account(release: str) -> str:
    """The ServiceAccount the chart binds to the pipeline Role: `<release fullname>-pipeline`."""
    return f"{chart_fullname(release)}-pipeline"


def submit(client: Any, pipeline: str, arguments: dict, release: str, experiment: str) -> str:
    """Create a run of compiled <pipeline>.yaml on the release's platform, as its pipeline ServiceAccount; the id."""
    run = client.create_run_from_pipeline_package(
        str(compiled_pipeline(pipeline)), arguments={"release": release, **arguments}, experiment_name=experiment,
        service_account=pipeline_service_account(release),
    )
    return run.run_id


def parse_argument(text: str) -> tuple[str, Any]:
    """NAME=VALUE, the value read as JSON when it is (numbers, booleans, objects), else as a string."""
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main(argv: list[str] | None = None) -> int:
    """Submit one pipeline run and print its id."""
    import kfp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", help="compiled pipeline name, e.g. simplear-lifecycle")
    parser.add_argument("--host", required=True, help="Kubeflow Pipelines API URL")
    parser.add_argument("--namespace", help="KFP namespace (multi-user mode)")
    parser.add_argument("--release", default="simplear", help="Helm release of the platform")
    parser.add_argument("--experiment", default="simplear")
    parser.add_argument("--arg", action="append", default=[], type=parse_argument, help="NAME=VALUE (repeatable)")
    args = parser.parse_args(argv)
    client = kfp.Client(host=args.host, namespace=args.namespace)
    print(submit(client, args.pipeline, dict(args.arg), args.release, args.experiment))
    return 0


if __name__ == "__main__":
    sys.exit(main())

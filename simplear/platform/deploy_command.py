"""`simplear deploy`: serve a model that is already in the store, as an InferenceService of the platform's runtime.

Creates the InferenceService (or updates the one of that name) with model format simplear and the checkpoint's
storageUri, then waits until its predictor pods serve that checkpoint, as the pipeline's deploy step does.
"""

from __future__ import annotations

import argparse
import sys

from simplear.platform.cluster_clients import ClusterUnavailable, connect
from simplear.platform.kubernetes_launcher import KubernetesLauncher, ServeNotReady
from simplear.platform.platform_discovery import PlatformNotFound, find_platform
from simplear.platform.stage_spec import LABEL_KEY, LABEL_VALUE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, the InferenceService, the cluster and how long to wait."""
    parser.add_argument("--model", required=True, help="store URI of the checkpoint (complete: has manifest.json)")
    parser.add_argument("--name", help="InferenceService (and model) name; default: the platform's")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, or the pod's own account")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("-n", "--namespace", help="namespace of the platform (default: the context's)")
    parser.add_argument("--release", default="", help="Helm release of the platform when the namespace has several")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds to wait for the new model to serve")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="extra label of the InferenceService (repeatable)")
    parser.add_argument("--skip-store-check", action="store_true",
                        help="do not check from here that the checkpoint is complete in the store")


def check_in_store(uri: str) -> str | None:
    """Why the checkpoint cannot be served (not an s3:// URI, or no manifest.json there), else None."""
    from simplear.store import Store, StoreError, is_s3

    if not is_s3(uri):
        return f"{uri} is not an s3:// URI: KServe's storage initializer downloads from the platform's store"
    try:
        if not Store().artifact_exists(uri):
            return f"no complete checkpoint at {uri}: it has no manifest.json"
    except (StoreError, OSError) as exc:
        return (f"cannot check {uri} from here ({exc}); set SIMPLEAR_S3_ENDPOINT and the AWS_* keys to reach the "
                "store, or pass --skip-store-check")
    return None


def _labels(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs as labels; ValueError naming a malformed one."""
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
            raise ValueError(f"--label {pair!r} is not KEY=VALUE with a valid label value")
        labels[key] = value
    return labels


def run(args: argparse.Namespace) -> int:
    """Deploy and wait: 0 once the new model serves, 1 when it does not in time, 2 for bad input or no platform."""
    try:
        labels = _labels(args.label)
        clients = connect(args.kubeconfig, args.context, args.namespace)
        platform = find_platform(clients.core, clients.namespace, args.release).config
    except (ValueError, ClusterUnavailable, PlatformNotFound) as exc:
        print(f"simplear deploy: {exc}", file=sys.stderr)
        return 2
    name = args.name or platform.inference_service
    if platform.serving is None or not name:
        print("simplear deploy: the platform serves no models (its chart has kserve.enabled=false)", file=sys.stderr)
        return 2
    why = None if args.skip_store_check else check_in_store(args.model)
    if why:
        print(f"simplear deploy: {why}", file=sys.stderr)
        return 2
    launcher = KubernetesLauncher(platform, clients, poll_s=5, note=lambda line: print(line, flush=True))
    print(f"InferenceService {name} in {clients.namespace}: serving {args.model} with runtime "
          f"{platform.serving.runtime}", flush=True)
    try:
        deployment = launcher.deploy(name, args.model, timeout=args.timeout, labels=labels)
    except (ServeNotReady, ValueError) as exc:
        print(f"simplear deploy: {exc}", file=sys.stderr)
        return 1
    with deployment:
        print(f"ready: {deployment.reported_url or deployment.url}/v1/models/{name}:predict serves {args.model}")
    return 0

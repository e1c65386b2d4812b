"""`simplear jobs list|describe|logs|cancel`: local runs (default) or, with --cluster, the kubeconfig's cluster."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from simplear.platform.local_runs import RUNS_DIR_VARIABLE, default_runs_dir

ACTIONS = {
    "list": "runs (local) or PyTorchJobs, rollout pods, InferenceServices and pipeline runs (--cluster)",
    "describe": "everything about one run; --cluster: [pytorchjob|pod|isvc|run/]NAME",
    "logs": "a run's rank 0 log (--replica for another); --cluster: a job's master, a pod or an isvc",
    "cancel": "stop a run; --cluster: delete a PyTorchJob (and its rollout server) or terminate a pipeline run",
}


def _target_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Where the jobs are; given before or after the action (suppress keeps the action's copy from resetting it)."""
    def default(value: Any) -> Any:
        """The option's default, or none at all on an action's parser."""
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--cluster", action="store_true", default=default(False),
                        help="the cluster of the kubeconfig instead of local runs")
    parser.add_argument("--runs-dir", type=Path, default=default(None),
                        help=f"local runs directory (default ${RUNS_DIR_VARIABLE} or ~/.simplear/runs)")
    parser.add_argument("--kubeconfig", default=default(None), help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    parser.add_argument("--context", default=default(None), help="kubeconfig context (default: the current one)")
    parser.add_argument("-n", "--namespace", default=default(None), help="namespace (default: the context's)")
    parser.add_argument("--kfp-host", default=default(None),
                        help="Kubeflow Pipelines API URL (default: through the API server's service proxy)")
    parser.add_argument("--kfp-namespace", default=default("kubeflow"), help="namespace Kubeflow Pipelines runs in")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The actions and where the jobs are."""
    _target_options(parser, suppress=False)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_text in ACTIONS.items():
        sub = actions.add_parser(action, help=help_text, description=help_text)
        _target_options(sub, suppress=True)
        if action != "list":
            sub.add_argument("name", help="run name; --cluster: [KIND/]NAME")
        if action == "logs":
            sub.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
            sub.add_argument("--replica", default="rank0",
                             help="local: rank0, rank1, ..., torchrun, rollout or supervisor")


def _run_local(args: argparse.Namespace) -> None:
    """The action on local runs."""
    from simplear.platform.jobs_local import cancel_local, describe_local, list_local, logs_local

    runs_dir = args.runs_dir or default_runs_dir()
    if args.action == "list":
        list_local(runs_dir, sys.stdout)
    elif args.action == "describe":
        describe_local(runs_dir, args.name, sys.stdout)
    elif args.action == "logs":
        logs_local(runs_dir, args.name, args.replica, args.follow, sys.stdout)
    else:
        cancel_local(runs_dir, args.name, sys.stdout)


def _kfp_client(args: argparse.Namespace) -> Any:
    """A Kubeflow Pipelines client: --kfp-host, else through the kubeconfig's API server proxy."""
    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=args.kfp_host, namespace=args.kfp_namespace, kube_context=args.context)


def _run_cluster(args: argparse.Namespace) -> None:
    """The action on the cluster."""
    from simplear.platform.cluster_clients import connect
    from simplear.platform.jobs_cluster import cancel_cluster, describe_cluster, list_cluster, logs_cluster

    clients = connect(args.kubeconfig, args.context, args.namespace)
    if args.action == "list":
        list_cluster(clients, lambda: _kfp_client(args).list_runs(page_size=50, sort_by="created_at desc").runs
                     or [], sys.stdout)
    elif args.action == "describe":
        describe_cluster(clients, lambda run_id: _kfp_client(args).get_run(run_id), args.name, sys.stdout)
    elif args.action == "logs":
        logs_cluster(clients, args.name, args.follow, sys.stdout)
    else:
        cancel_cluster(clients, lambda run_id: _kfp_client(args).terminate_run(run_id), args.name, sys.stdout)


def _expected_errors(cluster: bool) -> tuple[type[Exception], ...]:
    """Errors that mean a bad name or an unreachable cluster, reported in one line rather than a traceback."""
    if not cluster:
        return (ValueError,)
    from kubernetes.client.rest import ApiException

    return (ValueError, RuntimeError, ApiException)


def _one_line(exc: Exception) -> str:
    """The error in one line; an API server refusal as its status and reason."""
    if getattr(exc, "status", None) and getattr(exc, "reason", None):
        return f"the API server answered {exc.status} {exc.reason}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def run(args: argparse.Namespace) -> int:
    """Carry out the action; 1 with a one-line reason when the run, object or cluster cannot be found."""
    try:
        if args.cluster:
            _run_cluster(args)
        else:
            _run_local(args)
    except _expected_errors(args.cluster) as exc:
        print(f"simplear jobs {args.action}: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0

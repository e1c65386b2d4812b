"""`simplear jobs --cluster`: PyTorchJobs, rollout pods, InferenceServices and pipeline runs of one namespace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from simplear.platform.cluster_clients import ClusterClients
from simplear.platform.cluster_status import TRAINING_CONTAINER, failing_pod, isvc_state, isvc_storage_uri, job_status
from simplear.platform.jobs_tables import (
    ISVC_HEADERS,
    NONE,
    PIPELINE_RUN_HEADERS,
    POD_HEADERS,
    PYTORCHJOB_HEADERS,
    age,
    isvc_row,
    pipeline_run_row,
    pod_row,
    pytorchjob_row,
    table,
)
from simplear.platform.kubernetes_launcher import container_state
from simplear.platform.manifests.labels import COMPONENT_LABEL, STAGE_LABEL
from simplear.platform.manifests.rollout import COMPONENT as ROLLOUT
from simplear.platform.run_progress import LOG_TAIL_LINES, progress_of

ROLLOUT_SELECTOR = f"app.kubernetes.io/part-of=simplear,{COMPONENT_LABEL}={ROLLOUT}"
KINDS = {
    "pytorchjob": "pytorchjob", "pytorchjobs": "pytorchjob", "job": "pytorchjob",
    "pod": "pod", "pods": "pod", "po": "pod",
    "inferenceservice": "inferenceservice", "inferenceservices": "inferenceservice", "isvc": "inferenceservice",
    "run": "run", "runs": "run", "pipelinerun": "run",
}

PipelineRuns = Callable[[], list[Any]]


def parse_ref(ref: str) -> tuple[str, str]:
    """(kind, name) of `kind/name` (kubectl style); a bare name is a PyTorchJob."""
    kind, _, name = ref.rpartition("/")
    if not name:
        raise ValueError(f"{ref!r} names nothing: give NAME or KIND/NAME")
    if not kind:
        return "pytorchjob", name
    if kind.lower() not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: use pytorchjob, pod, inferenceservice (isvc) or run")
    return KINDS[kind.lower()], name


def _section(title: str, headers: list[str], rows: list[list[str]]) -> str:
    """A titled table, or the title and a 'none' line."""
    return f"{title}\n" + (table(headers, rows) if rows else "  (none)")


def cluster_listing(jobs: list[Any], pods: list[Any], isvcs: list[dict] | str, runs: list[Any] | str,
                    now: datetime) -> str:
    """The four tables of `jobs list --cluster`; a str in place of a list says why that kind is unavailable."""
    sections = [
        _section("PYTORCHJOBS", PYTORCHJOB_HEADERS, [pytorchjob_row(j, now) for j in jobs]),
        _section("ROLLOUT PODS", POD_HEADERS, [pod_row(p, now) for p in pods]),
    ]
    for title, headers, items, row in (("INFERENCESERVICES", ISVC_HEADERS, isvcs, isvc_row),
                                       ("PIPELINE RUNS", PIPELINE_RUN_HEADERS, runs, pipeline_run_row)):
        if isinstance(items, str):
            sections.append(f"{title}\n  unavailable: {items}")
        else:
            sections.append(_section(title, headers, [row(item, now) for item in items]))
    return "\n\n".join(sections)


def _fields(pairs: list[tuple[str, str]]) -> str:
    """kubectl-describe style `Key:  value` lines, empty values left out."""
    width = max(len(key) for key, _ in pairs) + 2
    return "\n".join(f"{key + ':':<{width}}{value}" for key, value in pairs if value)


def describe_pytorchjob(job: Any, pods: list[Any], now: datetime, master_log: list[str] | None = None) -> str:
    """A PyTorchJob: stage, status, progress (from the end of the master's log), replicas, conditions, pods and
    (failed) the pod that failed first."""
    status = job_status(job)
    replicas = job.spec.pytorch_replica_specs or {}
    head = _fields([
        ("Name", job.metadata.name), ("Namespace", job.metadata.namespace or ""),
        ("Stage", (job.metadata.labels or {}).get(STAGE_LABEL, NONE)), ("Status", status.phase.value),
        ("Message", status.message), ("Created", str(job.metadata.creation_timestamp or "")),
        ("Started", str(status.started or "")), ("Finished", str(status.finished or "")),
        ("Replicas", ", ".join(f"{kind} {spec.replicas}" for kind, spec in replicas.items())),
        ("Procs per node", job.spec.nproc_per_node or ""),
        ("Progress", progress_of(master_log or []).describe()),
    ])
    conditions = (job.status.conditions if job.status else None) or []
    condition_rows = [[c.type, c.status, c.reason or "", str(c.last_transition_time or ""), c.message or ""]
                      for c in conditions]
    parts = [head, _section("Conditions:", ["type", "status", "reason", "last transition", "message"],
                            condition_rows), _section("Pods:", POD_HEADERS, [pod_row(p, now) for p in pods])]
    failed = failing_pod(pods)
    if failed is not None:
        code = "" if failed.exit_code is None else f" exit code {failed.exit_code}"
        parts.append(f"Failed first: {failed.name}{code} {failed.reason}".rstrip())
    return "\n\n".join(parts)


def describe_pod(pod: Any, now: datetime) -> str:
    """A pod: node, phase and each container's state."""
    lines = [_fields([("Name", pod.metadata.name), ("Namespace", pod.metadata.namespace or ""),
                      ("Node", pod.spec.node_name or ""), ("Status", pod_row(pod, now)[2]),
                      ("Age", age(pod.metadata.creation_timestamp, now))])]
    for container in (pod.status.container_statuses if pod.status else None) or []:
        state = container.state
        if state and state.terminated:
            text = f"terminated ({state.terminated.reason or ''}, exit code {state.terminated.exit_code})"
        elif state and state.waiting:
            text = f"waiting ({state.waiting.reason or ''})"
        else:
            text = "running"
        lines.append(f"Container {container.name}: {text}, ready {container.ready}, restarts {container.restart_count}")
    return "\n".join(lines)


def describe_isvc(isvc: dict) -> str:
    """An InferenceService: readiness, URL, the checkpoint it serves, its conditions."""
    ready, why = isvc_state(isvc)
    meta, status = isvc.get("metadata", {}), isvc.get("status", {})
    head = _fields([("Name", meta.get("name", "")), ("Namespace", meta.get("namespace", "")),
                    ("Ready", str(ready)), ("Why not", "" if ready else why), ("URL", status.get("url", "")),
                    ("Storage", isvc_storage_uri(isvc)), ("Generation", str(meta.get("generation", ""))),
                    ("Observed", str(status.get("observedGeneration", "")))])
    rows = [[c.get("type", ""), str(c.get("status", "")), c.get("reason", ""), c.get("message", "")]
            for c in status.get("conditions", [])]
    return head + "\n\n" + _section("Conditions:", ["type", "status", "reason", "message"], rows)


def describe_run(run: Any) -> str:
    """A pipeline run: name, state, times and error."""
    error = (getattr(run.error, "message", None) or "") if run.error is not None else ""
    return _fields([("Run ID", run.run_id or ""), ("Name", run.display_name or ""), ("State", run.state or ""),
                    ("Created", str(run.created_at or "")), ("Finished", str(run.finished_at or "")),
                    ("Error", error)])


def _unavailable(fetch: Callable[[], Any]) -> Any:
    """fetch()'s answer, or a one-line reason when that part of the cluster cannot be reached."""
    try:
        return fetch()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def list_cluster(clients: ClusterClients, pipeline_runs: PipelineRuns, out: TextIO) -> None:
    """Print the namespace's PyTorchJobs, rollout pods, InferenceServices and pipeline runs."""
    namespace = clients.namespace
    jobs = clients.training.list_jobs(namespace=namespace)
    pods = clients.core.list_namespaced_pod(namespace, label_selector=ROLLOUT_SELECTOR).items
    isvcs = _unavailable(lambda: clients.isvcs.list(namespace))
    print(cluster_listing(jobs, pods, isvcs, _unavailable(pipeline_runs), datetime.now(UTC)), file=out)


def describe_cluster(clients: ClusterClients, get_run: Callable[[str], Any], ref: str, out: TextIO) -> None:
    """Describe one PyTorchJob, pod, InferenceService or pipeline run."""
    kind, name = parse_ref(ref)
    now, namespace = datetime.now(UTC), clients.namespace
    if kind == "pytorchjob":
        job = clients.training.get_job(name, namespace=namespace)
        pods = clients.training.get_job_pods(name, namespace=namespace)
        text = describe_pytorchjob(job, pods, now, _master_log_tail(clients, pods))
    elif kind == "pod":
        text = describe_pod(clients.core.read_namespaced_pod(name, namespace), now)
    elif kind == "inferenceservice":
        text = describe_isvc(clients.isvcs.get(name, namespace))
    else:
        text = describe_run(get_run(name))
    print(text, file=out)


def _master_log_tail(clients: ClusterClients, pods: list[Any]) -> list[str]:
    """The last lines of the master pod's training container (the job's pods, already listed, labelled as the
    training SDK's `is_master` selects them); none before it starts or when it cannot be read."""
    from kubeflow.training.constants.constants import JOB_ROLE_LABEL

    master = next((pod for pod in pods if (pod.metadata.labels or {}).get(JOB_ROLE_LABEL) == "master"), None)
    if container_state(master) in ("absent", "waiting"):
        return []
    try:
        text = clients.core.read_namespaced_pod_log(master.metadata.name, clients.namespace,
                                                    container=TRAINING_CONTAINER, tail_lines=LOG_TAIL_LINES)
    except ApiException:
        return []
    return text.splitlines()


def _pod_and_container(clients: ClusterClients, kind: str, name: str) -> tuple[str, str]:
    """The pod whose log `jobs logs` shows for a reference, and its container."""
    namespace = clients.namespace
    if kind == "pytorchjob":
        masters = clients.training.get_job_pod_names(name, namespace=namespace, is_master=True)
        if not masters:
            raise ValueError(f"PyTorchJob {name} has no master pod (yet)")
        return masters[0], TRAINING_CONTAINER
    if kind == "inferenceservice":
        pods = clients.core.list_namespaced_pod(
            namespace, label_selector=f"serving.kserve.io/inferenceservice={name}").items
        if not pods:
            raise ValueError(f"InferenceService {name} has no predictor pod")
        return pods[0].metadata.name, "kserve-container"
    if kind == "pod":
        pod = clients.core.read_namespaced_pod(name, namespace)
        return name, pod.spec.containers[0].name
    raise ValueError("pipeline runs keep their logs in the Pipelines UI: `jobs logs` takes a job, pod or isvc")


def logs_cluster(clients: ClusterClients, ref: str, follow: bool, out: TextIO) -> None:
    """Print (with follow: stream) the log of a PyTorchJob's master, an InferenceService's predictor or a pod."""
    pod, container = _pod_and_container(clients, *parse_ref(ref))
    if follow:
        for line in watch.Watch().stream(clients.core.read_namespaced_pod_log, name=pod,
                                         namespace=clients.namespace, container=container):
            print(line, file=out, flush=True)
        return
    out.write(clients.core.read_namespaced_pod_log(pod, clients.namespace, container=container))


def cancel_cluster(clients: ClusterClients, terminate_run: Callable[[str], Any], ref: str, out: TextIO) -> None:
    """Delete a PyTorchJob (with its rollout server) or terminate a pipeline run."""
    from simplear.platform.kubernetes_launcher import delete_run

    kind, name = parse_ref(ref)
    if kind == "pytorchjob":
        delete_run(clients, name)
        print(f"pytorchjob/{name} deleted", file=out)
    elif kind == "run":
        terminate_run(name)
        print(f"run/{name} terminating", file=out)
    else:
        raise ValueError(f"cancel takes a pytorchjob or a pipeline run; a {kind} belongs to one "
                         "(or to the chart, for the InferenceService)")

"""kubectl-style tables and ages, and the rows of each kind of object `simplear jobs` lists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from simplear.platform.cluster_status import isvc_state, isvc_storage_uri, job_status
from simplear.platform.launcher import RunStatus
from simplear.platform.manifests.labels import STAGE_LABEL

NONE = "<none>"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, headers in capitals (as kubectl prints)."""
    cells = [[h.upper() for h in headers], *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in cells)


def _aware(moment: datetime) -> datetime:
    """The moment with a time zone (UTC when it has none)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(since: datetime | None, now: datetime) -> str:
    """Elapsed time as kubectl shows it: 42s, 17m, 5h, 3d; <unknown> without a start."""
    if since is None:
        return "<unknown>"
    seconds = max(0, int((_aware(now) - _aware(since)).total_seconds()))
    for limit, unit, size in ((120, "s", 1), (120 * 60, "m", 60), (48 * 3600, "h", 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def status_text(status: RunStatus) -> str:
    """The phase, with the failing replica when there is one."""
    if status.failed_replica:
        return f"{status.phase.value} ({status.failed_replica})"
    return status.phase.value


def pytorchjob_row(job: Any, now: datetime) -> list[str]:
    """NAME, STAGE, STATUS, NODES, AGE of a KubeflowOrgV1PyTorchJob."""
    labels = job.metadata.labels or {}
    replicas = job.spec.pytorch_replica_specs or {}
    nodes = sum(spec.replicas or 0 for spec in replicas.values())
    return [job.metadata.name, labels.get(STAGE_LABEL, NONE), job_status(job).phase.value, str(nodes),
            age(job.metadata.creation_timestamp, now)]


PYTORCHJOB_HEADERS = ["name", "stage", "status", "nodes", "age"]


def pod_status(pod: Any) -> str:
    """What kubectl's STATUS column says: a waiting or terminated reason, else the pod's phase."""
    if pod.metadata.deletion_timestamp is not None:
        return "Terminating"
    for container in (pod.status.container_statuses if pod.status else None) or []:
        state = container.state
        if state and state.waiting and state.waiting.reason:
            return state.waiting.reason
        if state and state.terminated and state.terminated.reason and state.terminated.exit_code != 0:
            return state.terminated.reason
    return (pod.status.phase if pod.status else None) or "Unknown"


def pod_row(pod: Any, now: datetime) -> list[str]:
    """NAME, READY, STATUS, RESTARTS, AGE of a V1Pod."""
    containers = (pod.status.container_statuses if pod.status else None) or []
    ready = sum(1 for c in containers if c.ready)
    restarts = sum(c.restart_count or 0 for c in containers)
    return [pod.metadata.name, f"{ready}/{len(pod.spec.containers)}", pod_status(pod), str(restarts),
            age(pod.metadata.creation_timestamp, now)]


POD_HEADERS = ["name", "ready", "status", "restarts", "age"]


def _parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp of a JSON answer, or None."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def isvc_row(isvc: dict, now: datetime) -> list[str]:
    """NAME, READY, STORAGE, URL, AGE of an InferenceService dict."""
    ready, _ = isvc_state(isvc)
    meta = isvc.get("metadata", {})
    return [meta.get("name", NONE), "True" if ready else "False", isvc_storage_uri(isvc) or NONE,
            isvc.get("status", {}).get("url") or NONE, age(_parse_time(meta.get("creationTimestamp")), now)]


ISVC_HEADERS = ["name", "ready", "storage", "url", "age"]


def pipeline_run_row(run: Any, now: datetime) -> list[str]:
    """RUN ID, NAME, STATE, AGE of a kfp_server_api V2beta1Run."""
    return [run.run_id or NONE, run.display_name or NONE, run.state or NONE, age(run.created_at, now)]


PIPELINE_RUN_HEADERS = ["run id", "name", "state", "age"]

"""What the cluster's answers say: a PyTorchJob's phase, which of its pods failed first, an InferenceService's state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simplear.platform.launcher import Phase, RunStatus

TRAINING_CONTAINER = "pytorch"


def _conditions_true(job: Any) -> list[Any]:
    """The job's conditions whose status is True, in the order the operator wrote them."""
    conditions = (job.status.conditions if job.status else None) or []
    return [c for c in conditions if c.status == "True"]


def job_status(job: Any) -> RunStatus:
    """RunStatus of a KubeflowOrgV1PyTorchJob from its conditions: Failed and Succeeded win, then the latest."""
    started = job.status.start_time if job.status else None
    finished = job.status.completion_time if job.status else None
    conditions = _conditions_true(job)
    by_type = {c.type: c for c in conditions}
    for kind, phase in (("Failed", Phase.FAILED), ("Succeeded", Phase.SUCCEEDED)):
        if kind in by_type:
            condition = by_type[kind]
            return RunStatus(phase, condition.message or condition.reason or "", started=started,
                             finished=finished or condition.last_transition_time)
    if any(c.type == "Suspended" for c in conditions):
        return RunStatus(Phase.PENDING, "suspended", started=started)
    latest = conditions[-1] if conditions else None
    if latest is not None and latest.type in ("Running", "Restarting"):
        return RunStatus(Phase.RUNNING, latest.message or latest.reason or "", started=started)
    return RunStatus(Phase.PENDING, latest.message if latest is not None and latest.message else "", started=started)


@dataclass(frozen=True)
class FailedPod:
    """The pod whose training container failed first, and where its log of that failure is."""

    name: str
    exit_code: int | None
    reason: str
    previous: bool


def _failure(pod: Any) -> tuple[datetime | None, FailedPod] | None:
    """When and how this pod's training container failed (its current run, else the restarted one), or None."""
    statuses = (pod.status.container_statuses if pod.status else None) or []
    for status in statuses:
        if status.name != TRAINING_CONTAINER:
            continue
        for state, previous in ((status.state, False), (status.last_state, True)):
            ended = state.terminated if state else None
            if ended is not None and ended.exit_code != 0:
                return ended.finished_at, FailedPod(pod.metadata.name, ended.exit_code, ended.reason or "", previous)
    if pod.status and pod.status.phase == "Failed":
        return None, FailedPod(pod.metadata.name, None, pod.status.reason or "Failed", previous=False)
    return None


def failing_pod(pods: list[Any]) -> FailedPod | None:
    """The first pod (by failure time) whose training container exited non-zero, or one the node failed."""
    failures = [found for pod in pods if (found := _failure(pod)) is not None]
    if not failures:
        return None
    timed = [f for f in failures if f[0] is not None]
    return min(timed, key=lambda f: f[0])[1] if timed else failures[0][1]


def isvc_state(isvc: dict, generation: int | None = None) -> tuple[bool, str]:
    """(ready, why not) of an InferenceService as the API server returns it; with a generation, ready only once the
    controller has observed it (the rule of kserve's KServeClient.is_isvc_ready)."""
    status = isvc.get("status", {})
    for condition in status.get("conditions", []):
        if condition.get("type") == "Ready":
            ready = str(condition.get("status", "")).lower() == "true"
            if not ready:
                return False, condition.get("message") or condition.get("reason") or "not ready"
            observed = status.get("observedGeneration", 0)
            if generation is not None and observed < generation:
                return False, f"generation {generation} not observed yet (observed {observed})"
            return True, ""
    return False, "no Ready condition yet"


def isvc_failure(isvc: dict, generation: int | None = None) -> str | None:
    """The failure KServe reports for the InferenceService's model once it observed `generation`, else None: its
    modelStatus turns BlockedByFailedLoad (the storage initializer or the model container failed) or InvalidSpec,
    with the reason, message and exit code in lastFailureInfo (kserve pkg/apis/serving/v1beta1/
    inference_service_status.go, PropagateModelStatus)."""
    status = isvc.get("status", {})
    model = status.get("modelStatus", {})
    if model.get("transitionStatus") not in ("BlockedByFailedLoad", "InvalidSpec"):
        return None
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return None
    info = model.get("lastFailureInfo", {})
    where = f" in {info['location']}" if info.get("location") else ""
    code = f" (exit code {info['exitCode']})" if info.get("exitCode") else ""
    message = f": {info['message']}" if info.get("message") else ""
    return f"{info.get('reason') or model['transitionStatus']}{where}{code}{message}"


def isvc_storage_uri(isvc: dict) -> str:
    """The checkpoint an InferenceService serves: model.storageUri, or its kserve-container's STORAGE_URI."""
    predictor = isvc.get("spec", {}).get("predictor", {})
    if "model" in predictor:
        return predictor["model"].get("storageUri", "")
    for container in predictor.get("containers", []):
        for variable in container.get("env", []):
            if variable.get("name") == "STORAGE_URI":
                return variable.get("value", "")
    return ""


def _pod_ready(pod: dict) -> bool:
    """Whether a pod (as the API returns it) is Ready and not being deleted: the Service sends it requests."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and str(c.get("status")).lower() == "true" for c in conditions)


def predictor_pods_state(pods: list[dict], storage_uri: str) -> tuple[bool, str]:
    """(done, why not) of an InferenceService's predictor pods: done once some are ready and every ready one
    downloaded storage_uri (a rolling update leaves old pods serving the old model until they go)."""
    from simplear.platform.manifests.serving import served_uri

    ready = [pod for pod in pods if _pod_ready(pod)]
    stale = sorted({served_uri(pod) or "?" for pod in ready} - {storage_uri})
    if stale:
        return False, f"pods still serving {', '.join(stale)}"
    if not ready:
        return False, f"no predictor pod ready with {storage_uri} yet"
    return True, ""

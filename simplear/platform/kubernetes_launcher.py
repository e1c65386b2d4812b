"""KubernetesLauncher: a stage run is a PyTorchJob (GRPO: plus its rollout server), through the Kubeflow clients.

What it meets on a real cluster and how it copes:
- the training operator creates the job's pods a moment after the job, so the master pod may not exist yet;
- the kubelet answers a log request with 400 "container ... is waiting to start" until the container runs;
- the operator recreates a pod whose container exited with a retryable code (restartPolicy ExitCode);
- log streams and watches are cut when an API server or kubelet restarts, and the API server throttles (429).
So logs are followed only once the master's container runs or has ended, every transient error is asked again,
and a lost log stream never touches the job: only `cancel` deletes it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from simplear.platform.cluster_clients import TRANSIENT_STATUSES, ClusterClients, api_status, is_transient
from simplear.platform.cluster_objects import as_pytorchjob, to_dict
from simplear.platform.cluster_status import (
    TRAINING_CONTAINER,
    failing_pod,
    isvc_failure,
    isvc_state,
    job_status,
    predictor_pods_state,
)
from simplear.platform.config import PlatformConfig
from simplear.platform.launcher import Deployment, Phase, RunHandle, RunStatus, StageFailed
from simplear.platform.manifests import (
    inference_service,
    pytorch_job,
    rollout_deployment,
    rollout_name,
    rollout_service,
)
from simplear.platform.manifests.rollout import placement_of
from simplear.platform.manifests.serving import ISVC_LABEL
from simplear.platform.stage_spec import StageSpec
from simplear.platform.stages import checked_stage

TAIL_LINES = 50
# A log request also fails while the container starts (400) or its pod is being recreated (404).
LOG_RETRY_STATUSES = TRANSIENT_STATUSES | {400, 404}
# Seconds added to `sinceSeconds` when a stream is reopened: covers clock skew; repeated lines are skipped by timestamp.
RESUME_OVERLAP_S = 30
API_ERRORS = (ApiException, HTTPError, ConnectionError, RuntimeError, TimeoutError)


class ServeNotReady(RuntimeError):
    """The InferenceService did not serve the new model: KServe reported it failed, or it was not ready in time."""


def _ignore_missing(delete: Callable[[], Any]) -> None:
    """Run a delete; an object that is already gone (404) is fine."""
    try:
        delete()
    except API_ERRORS as exc:
        if api_status(exc) != 404:
            raise


def remove_rollout(clients: ClusterClients, run: str) -> None:
    """Delete a run's rollout Deployment and Service now, if it has them (garbage collection would, with the job)."""
    namespace = clients.namespace
    _ignore_missing(lambda: clients.apps.delete_namespaced_deployment(rollout_name(run), namespace))
    _ignore_missing(lambda: clients.core.delete_namespaced_service(rollout_name(run), namespace))


def delete_run(clients: ClusterClients, run: str) -> None:
    """Delete a run's PyTorchJob (its pods go with it) and its rollout server; parts already gone are fine."""
    _ignore_missing(lambda: clients.training.delete_job(run, namespace=clients.namespace))
    remove_rollout(clients, run)


def container_state(pod: Any) -> str:
    """`absent`, `waiting`, `running` or `terminated`: where the pod's training container is."""
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    for status in statuses:
        if status.name == TRAINING_CONTAINER and status.state is not None:
            if status.state.running is not None:
                return "running"
            if status.state.terminated is not None:
                return "terminated"
            return "waiting"
    return "absent"


def _pod_note(pod: Any) -> str:
    """Why a pod's training container is not running yet, as `kubectl get pod` would say it."""
    if pod is None:
        return "no master pod yet"
    for status in (pod.status.container_statuses if pod.status else None) or []:
        if status.name == TRAINING_CONTAINER and status.state is not None and status.state.waiting is not None:
            waiting = status.state.waiting
            return f"pod {pod.metadata.name} {waiting.reason or 'Waiting'}" + (
                f": {waiting.message}" if waiting.message else "")
    conditions = (pod.status.conditions if pod.status else None) or []
    unscheduled = next((c for c in conditions if c.type == "PodScheduled" and c.status == "False"), None)
    if unscheduled is not None:
        return f"pod {pod.metadata.name} {unscheduled.reason or 'Pending'}: {unscheduled.message or ''}".rstrip(": ")
    return f"pod {pod.metadata.name} {(pod.status.phase if pod.status else None) or 'Pending'}"


def _split_timestamp(line: str) -> tuple[tuple[datetime, int] | None, str]:
    """A `timestamps=true` log line as ((second, nanosecond), text): the kubelet writes RFC 3339 with up to nine
    fraction digits, then a space."""
    stamp, _, text = line.partition(" ")
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        return (datetime.fromisoformat(seconds).replace(tzinfo=UTC), int((fraction + "0" * 9)[:9])), text
    except ValueError:
        return None, line


class KubernetesLauncher:
    """Runs stages as PyTorchJobs in one namespace; also points the InferenceService at a new model."""

    def __init__(self, config: PlatformConfig, clients: ClusterClients, poll_s: float = 15,
                 note: Callable[[str], None] | None = None) -> None:
        self.config, self.clients, self.poll_s = config, clients, poll_s
        self.namespace = clients.namespace
        self.note = note or (lambda message: None)

    def _name(self, handle: RunHandle) -> str:
        """The job name of a run of this launcher's kind."""
        if handle.backend != "kubernetes":
            raise ValueError(f"run {handle.name} is a {handle.backend} run, not a Kubernetes one")
        return handle.name

    def run(self, stage: str, spec: StageSpec) -> RunHandle:
        """Create the PyTorchJob (GRPO's rollout server as its master's sidecar); for a pool rollout server then its
        Deployment and Service, owned by the job."""
        checked_stage(stage, spec)
        training = self.clients.training
        training.create_job(job=as_pytorchjob(pytorch_job(self.config, stage, spec, self.namespace)),
                            namespace=self.namespace)
        if spec.rollout is not None and placement_of(self.config, spec) == "pool":
            try:
                uid = training.get_job(spec.name, namespace=self.namespace).metadata.uid
                self.clients.apps.create_namespaced_deployment(
                    self.namespace, rollout_deployment(self.config, spec, uid, self.namespace))
                self.clients.core.create_namespaced_service(self.namespace, rollout_service(spec, uid, self.namespace))
            except API_ERRORS:
                delete_run(self.clients, spec.name)
                raise
        return RunHandle(stage=stage, name=spec.name, backend="kubernetes", namespace=self.namespace)

    def status(self, handle: RunHandle) -> RunStatus:
        """The job's status from its conditions."""
        return job_status(self.clients.training.get_job(self._name(handle), namespace=self.namespace))

    def _master(self, name: str) -> Any:
        """The job's master pod, or None while the operator has not created it (or the answer was transient)."""
        try:
            pods = self.clients.training.get_job_pods(name, namespace=self.namespace, is_master=True)
        except API_ERRORS as exc:
            if not is_transient(exc):
                raise
            return None
        return pods[0] if pods else None

    def _finished(self, name: str) -> bool:
        """Whether the job has ended (or is gone); a transient error reads as not yet."""
        try:
            return self.status(RunHandle("", name, "kubernetes")).phase.finished
        except API_ERRORS as exc:
            if api_status(exc) == 404:
                return True
            if not is_transient(exc):
                raise
            return False

    def logs(self, handle: RunHandle, follow: bool = False) -> Iterator[str]:
        """Lines of the master pod's training container; with follow, streamed (across restarts) until the job ends."""
        name = self._name(handle)
        if follow:
            return self._follow(name)
        pod = self._master(name)
        if pod is None or container_state(pod) in ("absent", "waiting"):
            return iter([])
        text = self.clients.core.read_namespaced_pod_log(pod.metadata.name, self.namespace,
                                                         container=TRAINING_CONTAINER)
        return iter(text.splitlines())

    def _follow(self, name: str) -> Iterator[str]:
        """Wait for the master's container, stream its log, reopen the stream when it breaks, stop once the job ends."""
        last: tuple[datetime, int] | None = None
        said = ""
        while True:
            pod = self._master(name)
            state = container_state(pod)
            if state in ("absent", "waiting"):
                if self._finished(name):
                    return
                if (note := _pod_note(pod)) != said:
                    self.note(f"{name}: waiting for the master's container: {note}")
                    said = note
                time.sleep(self.poll_s)
                continue
            options: dict[str, Any] = {"container": TRAINING_CONTAINER, "follow": True, "timestamps": True}
            resume_after = last
            if resume_after is not None:
                options["since_seconds"] = int((datetime.now(UTC) - resume_after[0]).total_seconds()) + RESUME_OVERLAP_S
            try:
                for line in watch.Watch().stream(self.clients.core.read_namespaced_pod_log, name=pod.metadata.name,
                                                 namespace=self.namespace, **options):
                    when, text = _split_timestamp(line)
                    if when is not None and resume_after is not None and when <= resume_after:
                        continue
                    last = when or last
                    yield text
            except API_ERRORS as exc:
                if not is_transient(exc, LOG_RETRY_STATUSES):
                    raise
                self.note(f"{name}: log stream of {pod.metadata.name} interrupted ({api_status(exc) or exc}); "
                          "reopening")
            if self._finished(name):
                return
            time.sleep(self.poll_s)

    def _failure(self, handle: RunHandle, status: RunStatus) -> StageFailed:
        """StageFailed naming the pod that failed first, its exit code and the last lines of its log."""
        try:
            failed = failing_pod(self.clients.training.get_job_pods(handle.name, namespace=self.namespace))
        except API_ERRORS as exc:
            return StageFailed(handle, status, [f"(pods unavailable: {api_status(exc) or exc})"])
        if failed is None:
            return StageFailed(handle, status, [])
        status = dataclasses.replace(status, failed_replica=failed.name, exit_code=failed.exit_code,
                                     reason=failed.reason)
        try:
            text = self.clients.core.read_namespaced_pod_log(failed.name, self.namespace, container=TRAINING_CONTAINER,
                                                             tail_lines=TAIL_LINES, previous=failed.previous)
        except API_ERRORS as exc:
            return StageFailed(handle, status, [f"(log of {failed.name} unavailable: {api_status(exc) or exc})"])
        return StageFailed(handle, status, text.splitlines())

    def wait(self, handle: RunHandle, timeout: float) -> RunStatus:
        """Poll until Succeeded or Failed (TimeoutError after timeout s), asking again on transient errors; the
        rollout server goes once the job ends. A job deleted under it fails the wait as Cancelled."""
        name = self._name(handle)
        deadline = time.monotonic() + timeout
        status = RunStatus(Phase.PENDING)
        while True:
            try:
                status = self.status(handle)
            except API_ERRORS as exc:
                if api_status(exc) == 404:
                    raise StageFailed(handle, RunStatus(Phase.CANCELLED, "the PyTorchJob was deleted"), []) from None
                if not is_transient(exc):
                    raise
            if status.phase.finished:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"stage {handle.stage} run {name} still {status.phase.value} after {timeout:g} s")
            time.sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))
        if handle.stage == "grpo":
            remove_rollout(self.clients, name)
        if status.phase != Phase.SUCCEEDED:
            raise self._failure(handle, status)
        return status

    def cancel(self, handle: RunHandle) -> None:
        """Delete the job and its pods, and the rollout server of a GRPO run."""
        delete_run(self.clients, self._name(handle))

    def deploy(self, name: str, storage_uri: str, timeout: float, labels: dict[str, str] | None = None
               ) -> Deployment:
        """Create or update the InferenceService `name` (empty: the platform's) to serve storage_uri with the
        platform's ServingRuntime, then wait until it is Ready at the new generation and every ready predictor pod
        serves storage_uri: a request sent after this returns reaches the new model, never the old one. ServeNotReady
        when KServe reports the model failed to load, or when serving takes over timeout s. The InferenceService
        outlives the returned deployment."""
        name = name or self.config.inference_service
        if not name or self.config.serving is None:
            raise ValueError("no InferenceService to deploy: the chart has kserve.enabled=false")
        isvcs = self.clients.isvcs
        desired = inference_service(self.config, name, storage_uri, labels, self.namespace)
        try:
            current = isvcs.get(name, self.namespace)
        except API_ERRORS as exc:
            if api_status(exc) != 404:
                raise
            applied = isvcs.create(self.namespace, desired)
        else:
            applied = isvcs.replace(name, self.namespace, updated_isvc(current, desired))
        isvc = self._wait_serving(name, storage_uri, applied["metadata"].get("generation"), timeout)
        return Deployment(name, f"http://{name}-predictor.{self.namespace}.svc", storage_uri,
                          reported_url=isvc.get("status", {}).get("url") or "")

    def _wait_serving(self, name: str, storage_uri: str, generation: int | None, timeout: float) -> dict:
        """Poll the InferenceService until Ready at `generation` (kserve_client.is_isvc_ready's rule), then its
        predictor pods until the ready ones all serve storage_uri; the InferenceService then. Transient API errors are
        asked again; ServeNotReady on a reported failure or after timeout s."""
        deadline = time.monotonic() + timeout
        selector = f"{ISVC_LABEL}={name},component=predictor"
        said = ""
        while True:
            failure = None
            try:
                isvc = self.clients.isvcs.get(name, self.namespace)
                failure = isvc_failure(isvc, generation)
                done, why = isvc_state(isvc, generation)
                if done and failure is None:
                    pods = self.clients.core.list_namespaced_pod(self.namespace, label_selector=selector).items
                    done, why = predictor_pods_state([to_dict(pod) for pod in pods], storage_uri)
            except API_ERRORS as exc:
                if not is_transient(exc):
                    raise
                done, why = False, f"API error {api_status(exc) or type(exc).__name__}"
            if failure is not None:
                raise ServeNotReady(f"InferenceService {name} cannot serve {storage_uri}: {failure}")
            if done:
                return isvc
            if time.monotonic() >= deadline:
                raise ServeNotReady(f"InferenceService {name} not serving {storage_uri} after {timeout:g} s: {why}")
            if why != said:
                self.note(f"{name}: {why}")
                said = why
            time.sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))


def updated_isvc(current: dict, desired: dict) -> dict:
    """The live InferenceService with the desired spec, labels and annotations (others kept), for a PUT: its
    resourceVersion makes the API server refuse the update if the object changed since it was read."""
    meta = dict(current["metadata"])
    meta["labels"] = {**meta.get("labels", {}), **desired["metadata"].get("labels", {})}
    meta["annotations"] = {**meta.get("annotations", {}), **desired["metadata"].get("annotations", {})}
    return {"apiVersion": desired["apiVersion"], "kind": desired["kind"], "metadata": meta, "spec": desired["spec"]}

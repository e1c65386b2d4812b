"""KubernetesLauncher: a stage run is a PyTorchJob (GRPO: plus its rollout server), through the Kubeflow clients."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from kubernetes import watch
from kubernetes.client.rest import ApiException

from simplear.config import PlatformConfig
from simplear.platform.cluster_clients import ClusterClients
from simplear.platform.cluster_objects import as_inference_service, as_pytorchjob
from simplear.platform.cluster_status import TRAINING_CONTAINER, failing_pod, isvc_state, job_status
from simplear.platform.launcher import Phase, RunHandle, RunStatus, StageFailed
from simplear.platform.manifests import pytorch_job, rollout_deployment, rollout_name, rollout_service
from simplear.platform.manifests.inferenceservice import storage_uri_patch
from simplear.platform.stage_spec import StageSpec
from simplear.platform.stages import checked_stage

TAIL_LINES = 50
FINISHED_CONDITIONS = {"Succeeded", "Failed"}


class ServeNotReady(RuntimeError):
    """The InferenceService did not become ready with the new model in time."""


def remove_rollout(clients: ClusterClients, run: str) -> None:
    """Delete a run's rollout Deployment and Service now, if it has them (garbage collection would, with the job)."""
    for delete in (clients.apps.delete_namespaced_deployment, clients.core.delete_namespaced_service):
        try:
            delete(rollout_name(run), clients.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise


def delete_run(clients: ClusterClients, run: str) -> None:
    """Delete a run's PyTorchJob (its pods go with it) and its rollout server."""
    clients.training.delete_job(run, namespace=clients.namespace)
    remove_rollout(clients, run)


class KubernetesLauncher:
    """Runs stages as PyTorchJobs in one namespace; also points the InferenceService at a new model."""

    def __init__(self, config: PlatformConfig, clients: ClusterClients, poll_s: int = 15) -> None:
        self.config, self.clients, self.poll_s = config, clients, poll_s
        self.namespace = clients.namespace

    def _name(self, handle: RunHandle) -> str:
        """The job name of a run of this launcher's kind."""
        if handle.backend != "kubernetes":
            raise ValueError(f"run {handle.name} is a {handle.backend} run, not a Kubernetes one")
        return handle.name

    def run(self, stage: str, spec: StageSpec) -> RunHandle:
        """Create the PyTorchJob; for GRPO then the rollout Deployment and Service, owned by the job."""
        checked_stage(stage, spec)
        training = self.clients.training
        training.create_job(job=as_pytorchjob(pytorch_job(self.config, stage, spec, self.namespace)),
                            namespace=self.namespace)
        if spec.rollout is not None:
            try:
                uid = training.get_job(spec.name, namespace=self.namespace).metadata.uid
                self.clients.apps.create_namespaced_deployment(
                    self.namespace, rollout_deployment(self.config, spec, uid, self.namespace))
                self.clients.core.create_namespaced_service(self.namespace, rollout_service(spec, uid, self.namespace))
            except (ApiException, RuntimeError):
                training.delete_job(spec.name, namespace=self.namespace)
                raise
        return RunHandle(stage=stage, name=spec.name, backend="kubernetes", namespace=self.namespace)

    def status(self, handle: RunHandle) -> RunStatus:
        """The job's status from its conditions."""
        return job_status(self.clients.training.get_job(self._name(handle), namespace=self.namespace))

    def logs(self, handle: RunHandle, follow: bool = False) -> Iterator[str]:
        """Lines of the master pod's training container; with follow, streamed until the container ends."""
        name = self._name(handle)
        masters = self.clients.training.get_job_pod_names(name, namespace=self.namespace, is_master=True)
        if not masters:
            return iter([])
        if follow:
            return watch.Watch().stream(self.clients.core.read_namespaced_pod_log, name=masters[0],
                                        namespace=self.namespace, container=TRAINING_CONTAINER)
        logs, _ = self.clients.training.get_job_logs(name, namespace=self.namespace, is_master=True)
        return iter(logs.get(masters[0], "").splitlines())

    def _failure(self, handle: RunHandle, status: RunStatus) -> StageFailed:
        """StageFailed naming the pod that failed first, with the last lines of its failing container's log."""
        pods = self.clients.training.get_job_pods(handle.name, namespace=self.namespace)
        failed = failing_pod(pods)
        if failed is None:
            return StageFailed(handle, status, [])
        text = self.clients.core.read_namespaced_pod_log(
            failed.name, self.namespace, container=TRAINING_CONTAINER, tail_lines=TAIL_LINES, previous=failed.previous)
        status = dataclasses.replace(status, failed_replica=failed.name, exit_code=failed.exit_code)
        return StageFailed(handle, status, text.splitlines())

    def wait(self, handle: RunHandle, timeout: float) -> RunStatus:
        """Wait for Succeeded or Failed (TimeoutError after timeout s); the rollout server goes once the job ends."""
        job = self.clients.training.wait_for_job_conditions(
            self._name(handle), namespace=self.namespace, expected_conditions=set(FINISHED_CONDITIONS),
            wait_timeout=max(1, int(timeout)), polling_interval=max(1, min(self.poll_s, int(timeout))))
        status = job_status(job)
        if handle.stage == "grpo":
            remove_rollout(self.clients, handle.name)
        if status.phase != Phase.SUCCEEDED:
            raise self._failure(handle, status)
        return status

    def cancel(self, handle: RunHandle) -> None:
        """Delete the job and its pods, and the rollout server of a GRPO run."""
        delete_run(self.clients, self._name(handle))

    def deploy(self, isvc_name: str, storage_uri: str, timeout: int = 900) -> dict:
        """Point the InferenceService at storage_uri and wait until it is ready with it; the patched object."""
        kserve = self.clients.kserve
        current = kserve.get(isvc_name, namespace=self.namespace)
        patched = kserve.patch(isvc_name, as_inference_service(storage_uri_patch(current, storage_uri)),
                               namespace=self.namespace)
        generation = patched["metadata"].get("generation")
        try:
            kserve.wait_isvc_ready(isvc_name, namespace=self.namespace, timeout_seconds=timeout,
                                   polling_interval=min(self.poll_s, timeout), expected_generation=generation)
        except RuntimeError:
            _, why = isvc_state(kserve.get(isvc_name, namespace=self.namespace))
            raise ServeNotReady(f"InferenceService {isvc_name} not ready with {storage_uri} after {timeout} s: "
                                f"{why}") from None
        return patched

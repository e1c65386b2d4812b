"""KubernetesLauncher: the client objects it hands the Kubeflow and KServe clients, and how it reads their answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import answered_job, chart_platform_config, condition, live_isvc, pod, pod_list, terminated

from simplear.platform.cluster_clients import ClusterUnavailable, connect
from simplear.platform.cluster_objects import as_pytorchjob, to_dict
from simplear.platform.cluster_status import failing_pod, isvc_failure, isvc_state, isvc_storage_uri, job_status
from simplear.platform.kubernetes_launcher import KubernetesLauncher
from simplear.platform.launcher import Launcher, Phase, RunHandle, RunStatus, StageFailed
from simplear.platform.local_launcher import LocalLauncher
from simplear.platform.manifests import pytorch_job
from simplear.platform.stage_spec import RolloutSpec, StageSpec
from simplear.platform.stages import STAGES


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_job_survives_the_training_clients_model(stage: str) -> None:
    """dict -> KubeflowOrgV1PyTorchJob (what create_job takes) -> JSON sent: nothing lost or renamed."""
    spec = StageSpec(name=f"{stage}-1", nodes=2 if STAGES[stage].distributed else 1,
                     rollout=RolloutSpec(model="s3://c/m") if stage == "grpo" else None)
    job = pytorch_job(chart_platform_config("custom-pools"), stage, spec, namespace="ml")
    model = as_pytorchjob(job)
    assert type(model).__name__ == "KubeflowOrgV1PyTorchJob"
    assert model.spec.nproc_per_node == job["spec"]["nprocPerNode"]
    assert to_dict(model) == job


@pytest.mark.parametrize(("conditions", "phase", "message"), [
    ([], Phase.PENDING, ""),
    ([condition("Created", message="PyTorchJob pretrain-1 is created.")], Phase.PENDING,
     "PyTorchJob pretrain-1 is created."),
    ([condition("Created"), condition("Running", message="is running")], Phase.RUNNING, "is running"),
    ([condition("Created"), condition("Running", "False"), condition("Restarting", message="pod restarted")],
     Phase.RUNNING, "pod restarted"),
    ([condition("Created"), condition("Running", "False"), condition("Succeeded", message="done")],
     Phase.SUCCEEDED, "done"),
    ([condition("Created"), condition("Running", "False"), condition("Failed", message="Worker 0 failed")],
     Phase.FAILED, "Worker 0 failed"),
    ([condition("Created"), condition("Suspended")], Phase.PENDING, "suspended"),
])
def test_job_status_reads_the_operators_conditions(conditions: list[dict], phase: Phase, message: str) -> None:
    """The phase a job is in, from the conditions the operator wrote, with its message."""
    status = job_status(answered_job(conditions))
    assert (status.phase, status.message) == (phase, message)
    assert status.started is not None and status.started.isoformat() == "2026-03-01T10:00:05+00:00"


def test_failing_pod_is_the_first_to_fail() -> None:
    """Worker 1 died first (its peers then failed on NCCL): it is blamed, with its exit code."""
    pods = pod_list(
        pod("pretrain-1-master-0", "master", terminated(1, "2026-03-01T10:05:09Z")),
        pod("pretrain-1-worker-0", "worker", terminated(137, "2026-03-01T10:05:00Z", "OOMKilled")),
        pod("pretrain-1-worker-1", "worker", {"running": {"startedAt": "2026-03-01T10:00:10Z"}}),
    )
    failed = failing_pod(pods)
    assert (failed.name, failed.exit_code, failed.reason, failed.previous) == (
        "pretrain-1-worker-0", 137, "OOMKilled", False)


def test_failing_pod_of_a_restarted_container_reads_the_previous_log() -> None:
    """A container restarting after a failure: the failure is in lastState, so its log is the previous one."""
    pods = pod_list(pod("pretrain-1-master-0", "master", {"waiting": {"reason": "CrashLoopBackOff"}},
                        last_state=terminated(2, "2026-03-01T10:03:00Z")))
    failed = failing_pod(pods)
    assert (failed.name, failed.exit_code, failed.previous) == ("pretrain-1-master-0", 2, True)
    assert failing_pod(pod_list(pod("ok-0", "master", terminated(0, "2026-03-01T10:03:00Z", "Completed")))) is None


def test_an_evicted_pod_is_blamed_when_no_container_exited() -> None:
    """A pod the node failed (no container exit code) is still named."""
    evicted = pod("pretrain-1-worker-0", "worker", {})
    evicted["status"].update(phase="Failed", reason="Evicted")
    failed = failing_pod(pod_list(evicted))
    assert (failed.name, failed.exit_code, failed.reason) == ("pretrain-1-worker-0", None, "Evicted")


def test_stage_failed_carries_stage_status_replica_and_tail() -> None:
    """The error a failed wait raises names the stage, run, phase, replica and shows the log tail."""
    handle = RunHandle("pretrain", "pretrain-1", "kubernetes", "ml")
    status = RunStatus(Phase.FAILED, "Worker 0 failed", failed_replica="pretrain-1-worker-0", exit_code=137)
    error = StageFailed(handle, status, ["step 12 loss 2.1", "torch.OutOfMemoryError: CUDA out of memory"])
    text = str(error)
    assert text.startswith("stage pretrain run pretrain-1 Failed (replica pretrain-1-worker-0, exit code 137): "
                           "Worker 0 failed")
    assert text.endswith("| torch.OutOfMemoryError: CUDA out of memory")
    assert error.status.exit_code == 137 and error.tail[-1].startswith("torch.OutOfMemoryError")


def test_isvc_state_and_storage_from_the_kserve_answer() -> None:
    """Ready from the Ready condition (with the reason when not), storage from the model's storageUri."""
    isvc = live_isvc()
    assert isvc_state(isvc) == (True, "")
    assert isvc_storage_uri(isvc) == "s3://simplear-checkpoints/models/simplear/v3"
    isvc["status"]["conditions"][1] = {"type": "Ready", "status": "False", "reason": "RevisionMissing",
                                       "message": "Revision simplear-predictor-00002 failed"}
    assert isvc_state(isvc) == (False, "Revision simplear-predictor-00002 failed")
    assert isvc_state({"metadata": {"name": "new"}}) == (False, "no Ready condition yet")
    isvc["status"]["conditions"][1] = {"type": "Ready", "status": "True"}
    assert isvc_state(isvc, generation=5) == (False, "generation 5 not observed yet (observed 4)")
    assert isvc_state(isvc, generation=4) == (True, "")


def test_isvc_failure_is_kserves_failed_load_at_the_observed_generation() -> None:
    """BlockedByFailedLoad with its lastFailureInfo is a failure, once KServe observed the generation asked for (an
    older failure is what the new spec may fix); InProgress is none."""
    isvc = live_isvc()
    assert isvc_failure(isvc) is None
    isvc["status"]["modelStatus"] = {"transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": {
        "reason": "ModelLoadFailed", "location": "simplear-predictor-00004-7d9f8", "exitCode": 1,
        "message": "config.json not found"}}
    said = "ModelLoadFailed in simplear-predictor-00004-7d9f8 (exit code 1): config.json not found"
    assert isvc_failure(isvc) == isvc_failure(isvc, generation=4) == said
    assert isvc_failure(isvc, generation=5) is None
    isvc["status"]["modelStatus"] = {"transitionStatus": "InvalidSpec"}
    assert isvc_failure(isvc) == "InvalidSpec"
    isvc["status"]["modelStatus"] = {"transitionStatus": "InProgress"}
    assert isvc_failure(isvc) is None


def test_connect_without_a_kubeconfig_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig file and not inside a pod: ClusterUnavailable naming the file."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterUnavailable, match="no cluster to talk to .*missing-kubeconfig"):
        connect(kubeconfig=str(tmp_path / "missing-kubeconfig"))


def kubeconfig(tmp_path: Path, namespace: str | None) -> Path:
    """A kubeconfig of one cluster on a closed local port, its context in `namespace`."""
    context: dict[str, Any] = {"cluster": "lab", "user": "me"}
    if namespace:
        context["namespace"] = namespace
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "lab", "context": context}],
        "users": [{"name": "me", "user": {"token": "t0ken"}}],
    }))
    return path


def test_connect_takes_the_namespace_of_the_context_unless_given(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The context's namespace, else default; -n wins; every client points at the kubeconfig's server."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    clients = connect(kubeconfig=str(kubeconfig(tmp_path, "ml-platform")))
    assert clients.namespace == "ml-platform" and clients.training.namespace == "ml-platform"
    assert clients.core.api_client.configuration.host == "https://127.0.0.1:1"
    assert clients.training.custom_api.api_client.configuration.host == "https://127.0.0.1:1"
    assert connect(kubeconfig=str(kubeconfig(tmp_path, None))).namespace == "default"
    assert connect(kubeconfig=str(kubeconfig(tmp_path, "a")), namespace="b").namespace == "b"


def test_launchers_implement_the_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both launchers have run, status, logs, wait and cancel."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    clients = connect(kubeconfig=str(kubeconfig(tmp_path, "ml")))
    assert isinstance(KubernetesLauncher(chart_platform_config("default"), clients), Launcher)
    assert isinstance(LocalLauncher(tmp_path / "runs"), Launcher)


def test_run_hands_the_training_client_a_job_it_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client takes the job object (a dict would be refused as the wrong type) and fails only on the network."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    clients = connect(kubeconfig=str(kubeconfig(tmp_path, "ml")))
    launcher = KubernetesLauncher(chart_platform_config("default"), clients)
    with pytest.raises(RuntimeError, match="^Failed to create PyTorchJob: ml/pretrain-1"):
        launcher.run("pretrain", StageSpec(name="pretrain-1"))
    with pytest.raises(ValueError, match="unknown stage"):
        launcher.run("finetune", StageSpec(name="x"))
    with pytest.raises(ValueError, match="is a local run, not a Kubernetes one"):
        launcher.status(RunHandle("sft", "x", "local"))

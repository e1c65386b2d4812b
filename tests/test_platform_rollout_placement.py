"""GRPO's rollout server in both placements: a native sidecar of the trainer's master pod (reached on localhost,
weights over NCCL with trainer rank 0 on 127.0.0.1) or a Deployment + Service on the rollout pool; both objects
validate against the PyTorchJob CRD and, pod by pod, against the core Pod schema."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from helpers import CRD_DIR, KUBERNETES_VERSIONS, chart_platform_config, validation_errors

from simplear.platform.config import NodePool
from simplear.platform.manifests import pytorch_job, rollout_deployment, rollout_service
from simplear.platform.stage_spec import RolloutSpec, StageSpec

ARGS = ("--prompts", "s3://d/p.jsonl", "--output", "s3://c/grpo", "--init-from", "s3://c/sft/final")


def grpo(placement: str | None, nodes: int = 1, **rollout: Any) -> StageSpec:
    """A GRPO run with its rollout server placed as asked."""
    return StageSpec(name="grpo-1", args=ARGS, nodes=nodes,
                     rollout=RolloutSpec(model="s3://c/sft/final", placement=placement, **rollout))


def replica(job: dict[str, Any], kind: str) -> dict[str, Any]:
    """The pod spec of one replica type."""
    return job["spec"]["pytorchReplicaSpecs"][kind]["template"]["spec"]


def flag(command: list[str], name: str) -> str:
    """The value after a flag."""
    return command[command.index(name) + 1]


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("placement", "nodes"), [("sidecar", 1), ("sidecar", 2), ("pool", 1), ("pool", 2)])
def test_both_layouts_validate_as_pytorchjobs_and_as_pods(placement: str, nodes: int, kubernetes_version: str) -> None:
    """The job against the PyTorchJob CRD (strict), each replica's pod against the core Pod schema of the oldest and
    newest Kubernetes the chart supports (1.29 has native sidecars on by default), the pool objects against theirs."""
    platform = chart_platform_config("default")
    spec = grpo(placement, nodes)
    job = pytorch_job(platform, "grpo", spec)
    docs = [job] + ([rollout_deployment(platform, spec, "uid"), rollout_service(spec, "uid")]
                    if placement == "pool" else [])
    assert {doc["kind"]: validation_errors(doc, kubernetes_version) for doc in docs} == {
        doc["kind"]: [] for doc in docs}
    for kind, replica_spec in job["spec"]["pytorchReplicaSpecs"].items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"grpo-1-{kind.lower()}-0"},
               "spec": replica_spec["template"]["spec"]}
        kubernetes_validate.validate(pod, kubernetes_version, strict=True)


def test_the_pytorchjob_crd_keeps_the_sidecars_restart_policy() -> None:
    """The operator's CRD schema describes initContainers in full, restartPolicy included: the API server prunes a
    field its structural schema lacks, which would turn the sidecar into an init container the trainer waits on
    forever. A misspelt sidecar field is refused, so the CRD really constrains init containers."""
    crd = yaml.load((CRD_DIR / "kubeflow.org_pytorchjobs.yaml").read_text(), Loader=yaml.CSafeLoader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    template = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["pytorchReplicaSpecs"][
        "additionalProperties"]["properties"]["template"]["properties"]["spec"]["properties"]
    assert "restartPolicy" in template["initContainers"]["items"]["properties"]
    job = pytorch_job(chart_platform_config("default"), "grpo", grpo("sidecar"))
    replica(job, "Master")["initContainers"][0]["restartPolicyy"] = "Always"
    assert any("restartPolicyy" in error for error in validation_errors(job))


def test_the_sidecar_runs_in_the_master_pod_on_its_own_gpus_and_the_trainer_uses_localhost() -> None:
    """One pod: the server is an init container with restartPolicy Always whose startup probe holds the trainer back
    until the policy is loaded; it binds only 127.0.0.1, takes the rollout pool's GPU count of the node, and the
    trainer's ranks get the rest; rank 0 opens the NCCL rendezvous on 127.0.0.1 and declares its port."""
    platform = chart_platform_config("default")
    job = pytorch_job(platform, "grpo", grpo("sidecar"))
    master = replica(job, "Master")
    (sidecar,) = master["initContainers"]
    (trainer,) = master["containers"]
    assert sidecar["restartPolicy"] == "Always" and sidecar["image"] == platform.images.rollout
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/health", "port": "rollout-http"}
    assert sidecar["startupProbe"]["periodSeconds"] * sidecar["startupProbe"]["failureThreshold"] >= 900
    assert [flag(sidecar["args"][i:], "--host") for i, a in enumerate(sidecar["args"]) if a == "--host"] == [
        "127.0.0.1"]
    assert flag(sidecar["args"], "--weight-transfer") == "auto"
    assert sidecar["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "7"
    assert "--nproc-per-node=7" in trainer["command"]
    assert flag(trainer["command"], "--rollout-url") == "http://127.0.0.1:8000"
    assert flag(trainer["command"], "--rollout-sync-host") == "127.0.0.1"
    assert flag(trainer["command"], "--rollout-weight-sync") == "auto"
    assert {"name": "weight-sync", "containerPort": 51216, "protocol": "TCP"} in trainer["ports"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in sidecar["volumeMounts"]  # NCCL's shared-memory transport
    assert "Worker" not in job["spec"]["pytorchReplicaSpecs"] and job["spec"]["nprocPerNode"] == "7"


def test_workers_of_a_two_node_sidecar_run_reach_the_server_on_the_master() -> None:
    """Worker pods have no sidecar and all their GPUs; they call the master pod's server, which then also binds its
    pod IP. Only rank 0 (on the master) pushes weights."""
    job = pytorch_job(chart_platform_config("default"), "grpo", grpo("sidecar", nodes=2))
    (sidecar,) = replica(job, "Master")["initContainers"]
    assert sidecar["args"][sidecar["args"].index("--host"):][:4] == ["--host", "127.0.0.1", "--host", "$(POD_IP)"]
    worker = replica(job, "Worker")
    assert "initContainers" not in worker
    (trainer,) = worker["containers"]
    assert flag(trainer["command"], "--rollout-url") == "http://$(MASTER_ADDR):8000"
    assert "--nproc-per-node=8" in trainer["command"] and job["spec"]["nprocPerNode"] == "8"


def test_the_pool_layout_reaches_its_server_through_the_service() -> None:
    """The trainer waits for the Service's /health in an init container, calls it there, and opens the NCCL
    rendezvous on its own pod IP, which the server (on another node) joins; the Service serves only HTTP."""
    platform = chart_platform_config("custom-pools")
    spec = grpo("pool")
    job = pytorch_job(platform, "grpo", spec)
    master = replica(job, "Master")
    (wait,) = master["initContainers"]
    assert wait["command"][-3:] == ["http://grpo-1-rollout:8000/health", "--timeout", "900"]
    (trainer,) = master["containers"]
    assert flag(trainer["command"], "--rollout-url") == "http://grpo-1-rollout:8000"
    assert flag(trainer["command"], "--rollout-sync-host") == "$(POD_IP)"
    assert trainer["env"][0] == {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "8"
    deployment = rollout_deployment(platform, spec, owner_uid="5f2c-uid", namespace="ml")
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert flag(server["args"], "--host") == "$(POD_IP)" and server["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "rollout-h100"}
    service = rollout_service(spec, owner_uid="5f2c-uid")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "rollout-http",
                                         "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_placement_defaults_to_the_platforms_and_store_sync_is_passed_on() -> None:
    """A spec without a placement takes the platform's (the chart's rollout.placement); weight_sync store reaches
    both ends."""
    platform = chart_platform_config("default").model_copy(update={"rollout_placement": "pool"})
    job = pytorch_job(platform, "grpo", grpo(None, weight_sync="store"))
    assert replica(job, "Master")["initContainers"][0]["name"] == "wait-for-rollout"
    assert flag(replica(job, "Master")["containers"][0]["command"], "--rollout-weight-sync") == "store"
    server = rollout_deployment(platform, grpo(None, weight_sync="store"), None)["spec"]["template"]["spec"]
    assert flag(server["containers"][0]["args"], "--weight-transfer") == "store"


def test_a_sidecar_that_would_leave_the_trainer_no_gpu_is_refused() -> None:
    """The sidecar takes its GPUs from the master's node: taking all of them is an error naming the way out."""
    platform = chart_platform_config("default")
    pools = {**platform.pools, "train": NodePool(gpus=1, cpu="8", memory="64Gi")}
    with pytest.raises(ValueError, match="leaving none for the trainer: use rollout placement pool"):
        pytorch_job(platform.model_copy(update={"pools": pools}), "grpo", grpo("sidecar"))
    cpu = {**platform.pools, "train": NodePool(gpus=0), "rollout": NodePool(gpus=0)}
    job = pytorch_job(platform.model_copy(update={"pools": cpu}), "grpo", grpo("sidecar"))
    assert "nvidia.com/gpu" not in replica(job, "Master")["initContainers"][0]["resources"]["limits"]

"""The manifest builders: every object validates against its schema, lands on its pool and runs locked down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    CONFIGS,
    GRPO,
    KUBERNETES_VERSIONS,
    chart_platform_config,
    containers,
    pod_specs_of,
    stage_objects,
    validation_errors,
)
from pydantic import ValidationError

from simplear.platform.config import PlatformConfig
from simplear.platform.default_platform import default_platform_config
from simplear.platform.manifests import (
    pytorch_job,
    rollout_service,
)
from simplear.platform.stage_spec import StageSpec

VALUES = yaml.safe_load((Path(__file__).resolve().parents[1] / "helm/simplear/values.yaml").read_text())

def config(name: str) -> PlatformConfig:
    """The platform config the chart renders for a value set."""
    return chart_platform_config(name)


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", CONFIGS)
def test_every_object_validates_against_its_schema(value_set: str, kubernetes_version: str) -> None:
    """PyTorchJob / InferenceService against their CRDs, core kinds against the API (strict, unknown fields out)."""
    problems = {f"{d['kind']}/{d['metadata']['name']}": errors for d in stage_objects(config(value_set))
                if (errors := validation_errors(d, kubernetes_version))}
    assert problems == {}


def shared_parts(value: Any, seen: set[int] | None = None) -> list[Any]:
    """Dicts and lists reached twice inside one object (YAML would print them as anchors and aliases)."""
    seen = set() if seen is None else seen
    if not isinstance(value, (dict, list)):
        return []
    if id(value) in seen:
        return [value]
    seen.add(id(value))
    children = value.values() if isinstance(value, dict) else value
    return [shared for child in children for shared in shared_parts(child, seen)]


@pytest.mark.parametrize("value_set", CONFIGS)
def test_no_object_shares_a_part_with_itself_or_the_config(value_set: str) -> None:
    """Every dict and list is built fresh: editing one pod template never edits another, or the config."""
    platform = config(value_set)
    docs = stage_objects(platform)
    assert [shared for doc in docs for shared in shared_parts(doc)] == []
    docs[0]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"].get("tolerations", [{}])[0]["key"] = "x"
    assert all(t.get("key") != "x" for pool in platform.pools.values() for t in pool.tolerations)


def test_pytorchjob_has_master_workers_torchrun_and_run_policy() -> None:
    """Three nodes: a Master and two Workers, an integer nprocPerNode, torchrun over the pod's ranks, run policy."""
    spec = StageSpec(name="pretrain-big", args=("--data", "s3://d/t", "--output", "s3://c/p"), nodes=3,
                     backoff_limit=5, ttl_seconds_after_finished=600, active_deadline_seconds=7200)
    job = pytorch_job(config("default"), "pretrain", spec, namespace="ml")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert {kind: r["replicas"] for kind, r in replicas.items()} == {"Master": 1, "Worker": 2}
    assert job["spec"]["nprocPerNode"] == "8" and int(job["spec"]["nprocPerNode"]) == 8
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 5,
                                        "ttlSecondsAfterFinished": 600, "activeDeadlineSeconds": 7200}
    assert job["metadata"]["namespace"] == "ml"
    (container,) = replicas["Worker"]["template"]["spec"]["containers"]
    assert container["name"] == "pytorch"
    assert container["command"] == [
        "torchrun", "--nnodes=3", "--nproc-per-node=8", "--node-rank=$(RANK)", "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)", "--no-python", "simplear", "train", "--stage", "pretrain",
        "--data", "s3://d/t", "--output", "s3://c/p"]
    assert {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"} in container["ports"]
    assert replicas["Master"]["template"] == replicas["Worker"]["template"]
    assert replicas["Master"]["template"] is not replicas["Worker"]["template"]


def test_procs_per_node_defaults_to_the_pools_gpus_and_cannot_exceed_them() -> None:
    """tokenize gets one rank per GPU of its pool; asking for more ranks than GPUs is an error."""
    platform = config("custom-pools")
    assert pytorch_job(platform, "evaluate", StageSpec(name="e"))["spec"]["nprocPerNode"] == "2"
    assert pytorch_job(platform, "evaluate", StageSpec(name="e", procs_per_node=1))["spec"]["nprocPerNode"] == "1"
    with pytest.raises(ValueError, match="3 ranks per pod but the master pod of pool serve gives its ranks 2 GPUs"):
        pytorch_job(platform, "evaluate", StageSpec(name="e", procs_per_node=3))


def test_a_one_process_stage_runs_without_torchrun() -> None:
    """shapes is a single process on the CPU pool; asking it for more nodes or ranks is an error."""
    job = pytorch_job(config("default"), "shapes", StageSpec(name="shapes-1", args=("--out", "s3://d/s")))
    (container,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert container["command"] == ["simplear", "shapes", "--out", "s3://d/s"]
    assert job["spec"]["nprocPerNode"] == "1" and "Worker" not in job["spec"]["pytorchReplicaSpecs"]
    assert container["image"] == config("default").images.base
    with pytest.raises(ValueError, match="stage shapes runs one process"):
        pytorch_job(config("default"), "shapes", StageSpec(name="shapes-1", nodes=2))
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        pytorch_job(config("default"), "train", StageSpec(name="t"))


@pytest.mark.parametrize("value_set", CONFIGS)
def test_every_workload_lands_on_its_pool_with_its_accelerators(value_set: str) -> None:
    """nodeSelector, tolerations, affinity exactly the pool's; requests = limits = its cpu, memory and GPUs."""
    platform = config(value_set)
    pools = {"shapes": "cpu", "tokenize": "tokenize", "pretrain": "train", "sft": "train", "grpo": "train",
             "evaluate": "serve", "rollout": "rollout", "simplear": "serve"}
    checked = set()
    for doc in stage_objects(platform):
        for where, meta, spec in pod_specs_of(doc):
            owner = meta["labels"].get("app.kubernetes.io/component") if doc["kind"] != "InferenceService" \
                else doc["metadata"]["name"]
            pool = platform.pools[pools[owner]]
            assert spec.get("nodeSelector", {}) == pool.node_selector, where
            assert spec.get("tolerations", []) == list(pool.tolerations), where
            assert spec.get("affinity") == pool.affinity, where
            sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
            gpus = pool.gpus
            for sidecar in sidecars:  # the rollout sidecar takes the rollout pool's share of the master's node
                rollout = platform.pools["rollout"]
                share = {"cpu": rollout.cpu, "memory": rollout.memory, pool.gpu_resource: str(rollout.gpus)}
                assert sidecar["resources"] == {"requests": share, "limits": share}, where
                gpus -= rollout.gpus
                checked.add("rollout")
            expected = {"cpu": pool.cpu, "memory": pool.memory}
            if pool.gpus:
                expected[pool.gpu_resource] = str(gpus)
            assert all(c["resources"] == {"requests": expected, "limits": expected} for c in spec["containers"]), where
            checked.add(pools[owner])
    assert checked == {"cpu", "tokenize", "train", "rollout", "serve"}


def test_custom_pools_put_serving_on_amd_gpus_behind_node_affinity() -> None:
    """The chart's custom-pools values: evaluate and serve ask for amd.com/gpu and carry the MI300 affinity."""
    platform = config("custom-pools")
    job = pytorch_job(platform, "evaluate", StageSpec(name="eval-1"))
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["mi300x"]
    assert pod["nodeSelector"] == {"pool": "serve-mi300"}


@pytest.mark.parametrize("value_set", CONFIGS)
def test_every_pod_runs_with_the_charts_security_context(value_set: str) -> None:
    """Pod and container security contexts equal the chart's defaults; /tmp is a sized emptyDir; no API token."""
    for doc in stage_objects(config(value_set)):
        for where, _, spec in pod_specs_of(doc):
            assert spec["securityContext"] == VALUES["podSecurityContext"], where
            assert spec["automountServiceAccountToken"] is False, where
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert volumes["tmp"]["emptyDir"]["sizeLimit"], where
            for container in containers(spec):
                assert container["securityContext"] == VALUES["containerSecurityContext"], where
                assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
                assert container["resources"]["requests"] == container["resources"]["limits"], where


@pytest.mark.parametrize("value_set", CONFIGS)
def test_every_pod_pulls_with_the_platforms_registry_secrets(value_set: str) -> None:
    """imagePullSecrets on every pod exactly when the platform names some (custom-pools does)."""
    platform = config(value_set)
    expected = [{"name": name} for name in platform.images.pull_secrets]
    pods = [(where, spec) for doc in stage_objects(platform) for where, _, spec in pod_specs_of(doc)]
    assert pods and all(spec.get("imagePullSecrets", []) == expected for _, spec in pods), pods
    assert bool(expected) == (value_set == "custom-pools")


def test_training_pods_get_shm_no_sidecar_and_the_store_client_label() -> None:
    """/dev/shm is a memory emptyDir of the spec's size; Istio is told to stay out; MinIO admits the pods."""
    spec = StageSpec(name="sft-1", shm_size="32Gi", scratch_size="200Gi")
    for _, meta, pod in pod_specs_of(pytorch_job(config("default"), "sft", spec)):
        assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
        assert meta["labels"]["simplear.io/store-client"] == "true"
        assert meta["labels"]["simplear.io/run"] == "sft-1" and meta["labels"]["simplear.io/stage"] == "sft"
        volumes = {v["name"]: v["emptyDir"] for v in pod["volumes"]}
        assert volumes == {"tmp": {"sizeLimit": "200Gi"}, "dshm": {"medium": "Memory", "sizeLimit": "32Gi"}}
        assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_store_credentials_come_from_the_secret_never_inline() -> None:
    """The two keys are secretKeyRefs to the configured Secret; a spec cannot smuggle them in as values."""
    platform = config("custom-pools")
    for doc in stage_objects(platform):
        for where, _, spec in pod_specs_of(doc):
            for container in spec["containers"]:
                env = {e["name"]: e for e in container.get("env", [])}
                if doc["kind"] == "InferenceService":
                    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env), where
                    continue
                for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                    assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {
                        "name": platform.store_secret, "key": key}}}, where
                assert env["SIMPLEAR_S3_ENDPOINT"]["value"] == platform.store_endpoint, where
    with pytest.raises(ValidationError, match="must not carry credentials"):
        StageSpec(name="x", env={"AWS_SECRET_ACCESS_KEY": "hunter2"})


def test_extra_env_reaches_every_rank() -> None:
    """The spec's env is added after the store variables, sorted."""
    job = pytorch_job(config("default"), "tokenize", StageSpec(name="t", env={"NCCL_DEBUG": "INFO", "A": "1"}))
    env = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]
    assert env[-2:] == [{"name": "A", "value": "1"}, {"name": "NCCL_DEBUG", "value": "INFO"}]


def test_a_rollout_server_is_only_for_grpo() -> None:
    """Rollout on another stage, a hand-set --rollout-url, or rollout objects of a spec without one: errors."""
    with pytest.raises(ValueError, match="only for stage grpo"):
        pytorch_job(config("default"), "sft", GRPO)
    with pytest.raises(ValueError, match="must not set --rollout"):
        pytorch_job(config("default"), "grpo", GRPO.model_copy(update={"args": ("--rollout-url=http://x",)}))
    with pytest.raises(ValueError, match="must not set --rollout"):
        pytorch_job(config("default"), "grpo", GRPO.model_copy(update={"args": ("--rollout-sync-host", "h")}))
    with pytest.raises(ValueError, match="has no rollout server"):
        rollout_service(StageSpec(name="g"), owner_uid=None)


@pytest.mark.parametrize("name", ["Pretrain", "1st", "a_b", "x" * 41, "run-"])
def test_run_names_must_make_valid_pod_names(name: str) -> None:
    """Lowercase DNS labels starting with a letter, short enough for <name>-worker-N and <name>-rollout."""
    with pytest.raises(ValidationError):
        StageSpec(name=name)


def test_builders_take_the_chart_default_config_and_a_hand_made_one_alike() -> None:
    """default_platform_config() (no namespace) uses a namespace-relative MinIO endpoint and the chart's names."""
    platform = default_platform_config("simplear")
    env = {e["name"]: e for e in pytorch_job(platform, "sft", StageSpec(name="s"))[
        "spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SIMPLEAR_S3_ENDPOINT"]["value"] == "simplear-minio:9000"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "simplear-store"
    assert default_platform_config("prod", "ml").store_endpoint == "prod-simplear-minio.ml.svc:9000"

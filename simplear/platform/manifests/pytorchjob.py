"""The PyTorchJob of a stage run: Master + Workers on the stage's pool, one torchrun per pod."""

from __future__ import annotations

from simplear.config import PlatformConfig
from simplear.platform.manifests.labels import NO_SIDECAR, metadata, pod_labels, run_labels
from simplear.platform.manifests.placement import placement, pool, resources
from simplear.platform.manifests.pod_security import (
    container_security_context,
    pod_security_context,
    scratch_mounts,
    scratch_volumes,
)
from simplear.platform.manifests.pull_secrets import image_pull_secrets
from simplear.platform.manifests.rollout import rollout_url
from simplear.platform.manifests.store_env import store_env
from simplear.platform.stage_spec import RolloutSpec, StageSpec
from simplear.platform.stages import checked_stage, stage_arguments

CONTAINER = "pytorch"  # the container name the training operator looks for
MASTER_PORT = 23456  # the operator's default; named pytorchjob-port, it becomes MASTER_PORT
WAIT_RESOURCES = {"cpu": "100m", "memory": "128Mi"}


def procs_per_pod(config: PlatformConfig, stage: str, spec: StageSpec) -> int:
    """Ranks in each pod: the spec's count, else one per GPU of the stage's pool (one on a CPU pool)."""
    kind = checked_stage(stage, spec)
    node_pool = pool(config, kind.pool)
    procs = spec.procs_per_node or max(node_pool.gpus, 1)
    if node_pool.gpus and procs > node_pool.gpus:
        raise ValueError(f"{procs} ranks per pod but pool {kind.pool} gives each pod {node_pool.gpus} GPUs")
    return procs


def rank_command(config: PlatformConfig, stage: str, spec: StageSpec) -> list[str]:
    """The container command: torchrun over the pod's ranks (the operator sets RANK and MASTER_*), or one process."""
    kind = checked_stage(stage, spec)
    url = rollout_url(spec.name, spec.rollout.port) if spec.rollout is not None else None
    arguments = ["simplear", *stage_arguments(stage, spec, url)]
    if not kind.distributed:
        return arguments
    return [
        "torchrun",
        f"--nnodes={spec.nodes}",
        f"--nproc-per-node={procs_per_pod(config, stage, spec)}",
        "--node-rank=$(RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "--no-python",
        *arguments,
    ]


def _wait_for_rollout(config: PlatformConfig, run: str, rollout: RolloutSpec) -> dict:
    """Init container holding the trainer back until its rollout server answers /health (the policy loads first)."""
    url = f"{rollout_url(run, rollout.port)}/health"
    return {
        "name": "wait-for-rollout",
        "image": config.images.train,
        "command": ["python", "-m", "simplear.platform.wait_ready", url, "--timeout", str(rollout.startup_seconds)],
        "resources": {"requests": dict(WAIT_RESOURCES), "limits": dict(WAIT_RESOURCES)},
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(shm=False),
    }


def _pod_template(config: PlatformConfig, stage: str, spec: StageSpec) -> dict:
    """The pod of every replica: placement, security, store access, scratch and /dev/shm."""
    kind = checked_stage(stage, spec)
    node_pool = pool(config, kind.pool)
    container = {
        "name": CONTAINER,
        "image": getattr(config.images, kind.image),
        "command": rank_command(config, stage, spec),
        "env": [*store_env(config), *({"name": k, "value": v} for k, v in sorted(spec.env.items()))],
        "ports": [{"name": "pytorchjob-port", "containerPort": MASTER_PORT, "protocol": "TCP"}],
        "resources": resources(node_pool),
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(shm=True),
    }
    pod: dict = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        **image_pull_secrets(config),
        **placement(node_pool),
    }
    if spec.rollout is not None:
        pod["initContainers"] = [_wait_for_rollout(config, spec.name, spec.rollout)]
    pod["containers"] = [container]
    pod["volumes"] = scratch_volumes(spec.scratch_size, spec.shm_size)
    return {"metadata": {"labels": pod_labels(stage, spec.name, extra=spec.labels), "annotations": dict(NO_SIDECAR)},
            "spec": pod}


def pytorch_job(config: PlatformConfig, stage: str, spec: StageSpec, namespace: str | None = None) -> dict:
    """The PyTorchJob of one stage run: a Master and nodes - 1 Workers, integer nprocPerNode, run policy."""
    procs = procs_per_pod(config, stage, spec)
    replicas = {"Master": {"replicas": 1, "restartPolicy": spec.restart_policy,
                           "template": _pod_template(config, stage, spec)}}
    if spec.nodes > 1:
        replicas["Worker"] = {"replicas": spec.nodes - 1, "restartPolicy": spec.restart_policy,
                              "template": _pod_template(config, stage, spec)}
    run_policy: dict = {
        "cleanPodPolicy": spec.clean_pod_policy,
        "backoffLimit": spec.backoff_limit,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
    }
    if spec.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": metadata(spec.name, run_labels(stage, spec.name, extra=spec.labels), namespace),
        "spec": {"nprocPerNode": str(procs), "runPolicy": run_policy, "pytorchReplicaSpecs": replicas},
    }

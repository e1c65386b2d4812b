"""The PyTorchJob of a stage run: Master + Workers on the stage's pool, one torchrun per pod (GRPO: with its rollout
server as the master pod's sidecar, or waiting for it on the rollout pool), queued and gang-scheduled as configured."""

from __future__ import annotations

from simplear.platform.config import NodePool, PlatformConfig
from simplear.platform.manifests.labels import NO_SIDECAR, metadata, pod_labels, run_labels
from simplear.platform.manifests.placement import placement, pool, resources
from simplear.platform.manifests.pod_security import (
    container_security_context,
    pod_security_context,
    scratch_mounts,
    scratch_volumes,
)
from simplear.platform.manifests.pull_secrets import image_pull_secrets
from simplear.platform.manifests.rollout import (
    placement_of,
    pod_ip_env,
    rollout_of,
    rollout_sidecar,
    rollout_url,
    trainer_pool,
    trainer_rollout_address,
)
from simplear.platform.manifests.scheduling import check_admission, pod_priority, queue_labels, scheduling_policy
from simplear.platform.manifests.store_env import store_env
from simplear.platform.stage_spec import StageSpec
from simplear.platform.stages import checked_stage, rollout_arguments, stage_arguments

CONTAINER = "pytorch"  # the container name the training operator looks for
MASTER_PORT = 23456  # the operator's default; named pytorchjob-port, it becomes MASTER_PORT
WAIT_RESOURCES = {"cpu": "100m", "memory": "128Mi"}
REPLICAS = ("Master", "Worker")


def procs_per_pod(config: PlatformConfig, stage: str, spec: StageSpec, replica: str = "Worker") -> int:
    """Ranks in one replica's pod: the spec's count, else one per GPU the trainer container gets (one on CPU)."""
    kind = checked_stage(stage, spec)
    node_pool = trainer_pool(config, spec, replica) if kind.pool == "train" else pool(config, kind.pool)
    procs = spec.procs_per_node or max(node_pool.gpus, 1)
    if node_pool.gpus and procs > node_pool.gpus:
        raise ValueError(f"{procs} ranks per pod but the {replica.lower()} pod of pool {kind.pool} gives its ranks "
                         f"{node_pool.gpus} GPUs")
    return procs


def rank_command(config: PlatformConfig, stage: str, spec: StageSpec, replica: str = "Master") -> list[str]:
    """The container command: torchrun over the pod's ranks (the operator sets RANK and MASTER_*), or one process.

    torchrun counts each node's ranks itself, so a master that shares its node with a rollout sidecar may run fewer.
    """
    kind = checked_stage(stage, spec)
    rollout = None
    if spec.rollout is not None:
        url, sync_host = trainer_rollout_address(config, spec, replica)
        rollout = rollout_arguments(url, spec, sync_host)
    arguments = ["simplear", *stage_arguments(stage, spec, rollout)]
    if not kind.distributed:
        return arguments
    return [
        "torchrun",
        f"--nnodes={spec.nodes}",
        f"--nproc-per-node={procs_per_pod(config, stage, spec, replica)}",
        "--node-rank=$(RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "--no-python",
        *arguments,
    ]


def _wait_for_rollout(config: PlatformConfig, spec: StageSpec) -> dict:
    """Init container holding a trainer back until its pool rollout server answers /health (the policy loads first)."""
    rollout = rollout_of(spec)
    url = f"{rollout_url(spec.name, rollout.port)}/health"
    return {
        "name": "wait-for-rollout",
        "image": config.images.train,
        "command": ["python", "-m", "simplear.platform.wait_ready", url, "--timeout", str(rollout.startup_seconds)],
        "resources": {"requests": dict(WAIT_RESOURCES), "limits": dict(WAIT_RESOURCES)},
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(shm=False),
    }


def _trainer_container(config: PlatformConfig, stage: str, spec: StageSpec, replica: str, node_pool: NodePool
                       ) -> dict:
    """torchrun (or the one process) of the replica, on the replica's share of the pool."""
    kind = checked_stage(stage, spec)
    env = [*store_env(config), *({"name": k, "value": v} for k, v in sorted(spec.env.items()))]
    ports = [{"name": "pytorchjob-port", "containerPort": MASTER_PORT, "protocol": "TCP"}]
    if spec.rollout is not None:
        env.insert(0, pod_ip_env())
        if replica == "Master":  # trainer rank 0 opens vLLM's NCCL rendezvous (a TCPStore) here
            ports.append({"name": "weight-sync", "containerPort": spec.rollout.weight_sync_port, "protocol": "TCP"})
    return {
        "name": CONTAINER,
        "image": getattr(config.images, kind.image),
        "command": rank_command(config, stage, spec, replica),
        "env": env,
        "ports": ports,
        "resources": resources(node_pool),
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(shm=True),
    }


def _pod_template(config: PlatformConfig, stage: str, spec: StageSpec, replica: str) -> dict:
    """The pod of one replica: placement, security, priority, store access, scratch and /dev/shm, and the rollout
    server (the master's sidecar) or the wait for it (pool placement)."""
    kind = checked_stage(stage, spec)
    node_pool = pool(config, kind.pool)
    trainer = trainer_pool(config, spec, replica) if kind.pool == "train" else node_pool
    pod: dict = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        **pod_priority(config),
        **image_pull_secrets(config),
        **placement(node_pool),
    }
    if spec.rollout is not None:
        if placement_of(config, spec) == "pool":
            pod["initContainers"] = [_wait_for_rollout(config, spec)]
        elif replica == "Master":
            pod["initContainers"] = [rollout_sidecar(config, spec)]
    pod["containers"] = [_trainer_container(config, stage, spec, replica, trainer)]
    pod["volumes"] = scratch_volumes(spec.scratch_size, spec.shm_size)
    return {"metadata": {"labels": pod_labels(stage, spec.name, extra=spec.labels), "annotations": dict(NO_SIDECAR)},
            "spec": pod}


def pytorch_job(config: PlatformConfig, stage: str, spec: StageSpec, namespace: str | None = None) -> dict:
    """The PyTorchJob of one stage run: a Master and nodes - 1 Workers, run policy, queue and gang.

    nprocPerNode is the ranks of a full pod (the workers'); each pod's torchrun states its own count.
    """
    separate = int(spec.rollout is not None and placement_of(config, spec) == "pool")
    check_admission(config, spec.name, separate)
    replicas = {}
    for replica, count in zip(REPLICAS, (1, spec.nodes - 1), strict=True):
        if count:
            replicas[replica] = {"replicas": count, "restartPolicy": spec.restart_policy,
                                 "template": _pod_template(config, stage, spec, replica)}
    run_policy: dict = {
        "cleanPodPolicy": spec.clean_pod_policy,
        "backoffLimit": spec.backoff_limit,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        **scheduling_policy(config, spec.nodes + separate),
    }
    if spec.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = spec.active_deadline_seconds
    labels = {**run_labels(stage, spec.name, extra=spec.labels), **queue_labels(config)}
    full = procs_per_pod(config, stage, spec, "Worker" if spec.nodes > 1 else "Master")
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": metadata(spec.name, labels, namespace),
        "spec": {"nprocPerNode": str(full), "runPolicy": run_policy, "pytorchReplicaSpecs": replicas},
    }

"""GRPO's rollout server: a native sidecar of the trainer's master pod (default) or a Deployment + Service on the
rollout pool, and the address and weight sync the trainer gets for each placement.

Sidecar: an init container with restartPolicy Always (Kubernetes >= 1.29) in the master pod, on its own GPUs of the
same node. Its startup probe holds the trainer back until the policy is loaded; the trainer reaches it on 127.0.0.1
and trainer rank 0 opens vLLM's NCCL rendezvous on 127.0.0.1 too; it ends with the pod, so nothing outlives the run.
Pool: one replica on the rollout pool, owned by the PyTorchJob; the trainer reaches it through its Service and opens
the rendezvous on its own pod IP, which the server joins.
"""

from __future__ import annotations

from typing import Literal

from simplear.platform.config import NodePool, PlatformConfig
from simplear.platform.manifests.labels import COMPONENT_LABEL, NO_SIDECAR, RUN_LABEL, metadata, pod_labels, run_labels
from simplear.platform.manifests.placement import placement, pool, resources
from simplear.platform.manifests.pod_security import (
    container_security_context,
    pod_security_context,
    scratch_mounts,
    scratch_volumes,
)
from simplear.platform.manifests.pull_secrets import image_pull_secrets
from simplear.platform.manifests.scheduling import gang_member, pod_priority
from simplear.platform.manifests.store_env import store_env
from simplear.platform.stage_spec import RolloutSpec, StageSpec

COMPONENT = "rollout"
PROBE_PERIOD_S = 10
LOOPBACK = "127.0.0.1"
Placement = Literal["sidecar", "pool"]


def pod_ip_env() -> dict:
    """The POD_IP variable from the downward API, which `$(POD_IP)` in args expands to."""
    return {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def rollout_name(run: str) -> str:
    """Name of a run's rollout Deployment and Service (pool placement)."""
    return f"{run}-{COMPONENT}"


def rollout_url(run: str, port: int) -> str:
    """The pool rollout server's base URL as the trainer pods in the same namespace reach it."""
    return f"http://{rollout_name(run)}:{port}"


def owner_reference(job_name: str, job_uid: str) -> dict:
    """A reference to the run's PyTorchJob: deleting the job deletes what carries it."""
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": job_name, "uid": job_uid,
            "controller": True}


def rollout_of(spec: StageSpec) -> RolloutSpec:
    """The spec's rollout server, or a clear error when it has none."""
    if spec.rollout is None:
        raise ValueError(f"run {spec.name} has no rollout server: set StageSpec.rollout")
    return spec.rollout


def placement_of(config: PlatformConfig, spec: StageSpec) -> Placement:
    """Where the run's rollout server goes: the spec's choice, else the platform's."""
    return rollout_of(spec).placement or config.rollout_placement


def sidecar_pool(config: PlatformConfig) -> NodePool:
    """What the sidecar takes of the master pod's node: the rollout pool's cpu, memory and GPU count, of the train
    pool's GPU kind (none on a CPU train pool). ValueError when no GPU would be left for the trainer."""
    train, rollout = pool(config, "train"), pool(config, "rollout")
    gpus = rollout.gpus if train.gpus else 0
    if train.gpus and gpus >= train.gpus:
        raise ValueError(f"the rollout sidecar takes {gpus} of the train pool's {train.gpus} GPUs per pod, leaving "
                         "none for the trainer: use rollout placement pool, fewer rollout GPUs, or bigger train nodes")
    return rollout.model_copy(update={"gpus": gpus, "gpu_resource": train.gpu_resource})


def trainer_pool(config: PlatformConfig, spec: StageSpec, replica: str) -> NodePool:
    """The train pool as one replica's trainer container sees it: the master shares its GPUs with a sidecar."""
    train = pool(config, "train")
    if spec.rollout is None or replica != "Master" or placement_of(config, spec) != "sidecar":
        return train
    return train.model_copy(update={"gpus": train.gpus - sidecar_pool(config).gpus})


def _health_probe(failures: int) -> dict:
    """An HTTP probe of /health that gives up after `failures` failures in a row."""
    return {"httpGet": {"path": "/health", "port": "rollout-http"}, "periodSeconds": PROBE_PERIOD_S,
            "timeoutSeconds": 5, "failureThreshold": failures}


def _server_container(config: PlatformConfig, spec: StageSpec, hosts: list[str], node_pool: NodePool) -> dict:
    """`simplear rollout-server` on `hosts`, probing /health, reaching the store."""
    rollout = rollout_of(spec)
    transfer = "store" if rollout.weight_sync == "store" else ("nccl" if rollout.weight_sync == "nccl" else "auto")
    args = ["--engine", rollout.engine, "--model", rollout.model]
    for host in hosts:
        args += ["--host", host]
    args += ["--port", str(rollout.port), "--weight-transfer", transfer, *rollout.args]
    env = [pod_ip_env()] if "$(POD_IP)" in hosts else []
    return {
        "name": COMPONENT,
        "image": config.images.rollout,
        "command": ["simplear", "rollout-server"],
        "args": args,
        "env": [*env, *store_env(config)],
        "ports": [{"name": "rollout-http", "containerPort": rollout.port, "protocol": "TCP"}],
        "startupProbe": _health_probe(-(-rollout.startup_seconds // PROBE_PERIOD_S)),
        "readinessProbe": _health_probe(3),
        "livenessProbe": _health_probe(6),
        "resources": resources(node_pool),
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(shm=True),
    }


def rollout_sidecar(config: PlatformConfig, spec: StageSpec) -> dict:
    """The rollout server as a native sidecar of the master pod: on 127.0.0.1 (and the pod IP when worker pods of a
    multi-node run call it too), on the sidecar's share of the node."""
    hosts = [LOOPBACK, "$(POD_IP)"] if spec.nodes > 1 else [LOOPBACK]
    return {**_server_container(config, spec, hosts, sidecar_pool(config)), "restartPolicy": "Always"}


def trainer_rollout_address(config: PlatformConfig, spec: StageSpec, replica: str) -> tuple[str, str]:
    """(rollout server URL, this pod's NCCL rendezvous host) for a replica's trainer container."""
    port = rollout_of(spec).port
    if placement_of(config, spec) == "pool":
        return rollout_url(spec.name, port), "$(POD_IP)"
    if replica == "Master":
        return f"http://{LOOPBACK}:{port}", LOOPBACK
    return f"http://$(MASTER_ADDR):{port}", "$(POD_IP)"  # only rank 0, on the master, pushes weights


def _metadata(spec: StageSpec, owner_uid: str | None, namespace: str | None) -> dict:
    """Metadata of the Deployment and the Service: run labels and, once the job exists, its owner reference."""
    meta = metadata(rollout_name(spec.name), run_labels("grpo", spec.name, COMPONENT, spec.labels), namespace)
    if owner_uid is not None:
        meta["ownerReferences"] = [owner_reference(spec.name, owner_uid)]
    return meta


def _selector(spec: StageSpec) -> dict[str, str]:
    """Labels that pick the run's rollout pods."""
    return {RUN_LABEL: spec.name, COMPONENT_LABEL: COMPONENT}


def rollout_deployment(
    config: PlatformConfig, spec: StageSpec, owner_uid: str | None, namespace: str | None = None
) -> dict:
    """One rollout-server replica on the rollout pool, in the job's gang when gang scheduling is on; owner_uid is
    the PyTorchJob's (None: no owner reference)."""
    gang_labels, gang_annotations, gang_spec = gang_member(config, spec.name, COMPONENT)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, owner_uid, namespace),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector(spec)},
            "template": {
                "metadata": {"labels": {**pod_labels("grpo", spec.name, COMPONENT, spec.labels), **gang_labels},
                             "annotations": {**NO_SIDECAR, **gang_annotations}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    **gang_spec,
                    **pod_priority(config),
                    **image_pull_secrets(config),
                    **placement(pool(config, "rollout")),
                    "containers": [_server_container(config, spec, ["$(POD_IP)"], pool(config, "rollout"))],
                    "volumes": scratch_volumes(spec.scratch_size, spec.shm_size),
                },
            },
        },
    }


def rollout_service(spec: StageSpec, owner_uid: str | None, namespace: str | None = None) -> dict:
    """The pool rollout server's address for the trainer pods."""
    rollout = rollout_of(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, owner_uid, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(spec),
            "ports": [{"name": "http", "port": rollout.port, "targetPort": "rollout-http", "protocol": "TCP"}],
        },
    }

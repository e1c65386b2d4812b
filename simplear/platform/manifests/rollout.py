"""GRPO's rollout server: a Deployment and its Service on the rollout pool, owned by the trainer's PyTorchJob."""

from __future__ import annotations

from simplear.config import PlatformConfig
from simplear.platform.manifests.labels import COMPONENT_LABEL, NO_SIDECAR, RUN_LABEL, metadata, pod_labels, run_labels
from simplear.platform.manifests.placement import placement, pool, resources
from simplear.platform.manifests.pod_security import (
    container_security_context,
    pod_security_context,
    scratch_mounts,
    scratch_volumes,
)
from simplear.platform.manifests.pull_secrets import image_pull_secrets
from simplear.platform.manifests.store_env import store_env
from simplear.platform.stage_spec import RolloutSpec, StageSpec

COMPONENT = "rollout"
PROBE_PERIOD_S = 10


def rollout_name(run: str) -> str:
    """Name of a run's rollout Deployment and Service."""
    return f"{run}-{COMPONENT}"


def rollout_url(run: str, port: int) -> str:
    """The rollout server's base URL as the trainer pods in the same namespace reach it."""
    return f"http://{rollout_name(run)}:{port}"


def owner_reference(job_name: str, job_uid: str) -> dict:
    """A reference to the run's PyTorchJob: deleting the job deletes what carries it."""
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": job_name, "uid": job_uid,
            "controller": True}


def _rollout(spec: StageSpec) -> RolloutSpec:
    """The spec's rollout server, or a clear error when it has none."""
    if spec.rollout is None:
        raise ValueError(f"run {spec.name} has no rollout server: set StageSpec.rollout")
    return spec.rollout


def _metadata(spec: StageSpec, owner_uid: str | None, namespace: str | None) -> dict:
    """Metadata of the Deployment and the Service: run labels and, once the job exists, its owner reference."""
    meta = metadata(rollout_name(spec.name), run_labels("grpo", spec.name, COMPONENT, spec.labels), namespace)
    if owner_uid is not None:
        meta["ownerReferences"] = [owner_reference(spec.name, owner_uid)]
    return meta


def _selector(spec: StageSpec) -> dict[str, str]:
    """Labels that pick the run's rollout pods."""
    return {RUN_LABEL: spec.name, COMPONENT_LABEL: COMPONENT}


def _health_probe(failures: int) -> dict:
    """An HTTP probe of /health that gives up after `failures` failures in a row."""
    return {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 5,
            "failureThreshold": failures}


def _container(config: PlatformConfig, spec: StageSpec, rollout: RolloutSpec) -> dict:
    """The rollout-server container: binds the pod IP, probes /health, reaches the store."""
    args = ["--engine", rollout.engine, "--model", rollout.model, "--host", "$(POD_IP)", "--port", str(rollout.port)]
    if rollout.weight_transfer == "nccl":
        args += ["--weight-transfer", "nccl"]
    return {
        "name": COMPONENT,
        "image": config.images.rollout,
        "command": ["simplear", "rollout-server"],
        "args": [*args, *rollout.args],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, *store_env(config)],
        "ports": [
            {"name": "http", "containerPort": rollout.port, "protocol": "TCP"},
            {"name": "weight-sync", "containerPort": rollout.weight_sync_port, "protocol": "TCP"},
        ],
        "startupProbe": _health_probe(-(-rollout.startup_seconds // PROBE_PERIOD_S)),
        "readinessProbe": _health_probe(3),
        "livenessProbe": _health_probe(6),
        "resources": resources(pool(config, "rollout")),
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(shm=True),
    }


def rollout_deployment(
    config: PlatformConfig, spec: StageSpec, owner_uid: str | None, namespace: str | None = None
) -> dict:
    """One rollout-server replica on the rollout pool; owner_uid is the PyTorchJob's (None: no owner reference)."""
    rollout = _rollout(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, owner_uid, namespace),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector(spec)},
            "template": {
                "metadata": {"labels": pod_labels("grpo", spec.name, COMPONENT, spec.labels),
                             "annotations": dict(NO_SIDECAR)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    **image_pull_secrets(config),
                    **placement(pool(config, "rollout")),
                    "containers": [_container(config, spec, rollout)],
                    "volumes": scratch_volumes(spec.scratch_size, spec.shm_size),
                },
            },
        },
    }


def rollout_service(spec: StageSpec, owner_uid: str | None, namespace: str | None = None) -> dict:
    """The rollout server's address for the trainer: the HTTP port and the weight-sync port."""
    rollout = _rollout(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, owner_uid, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(spec),
            "ports": [
                {"name": "http", "port": rollout.port, "targetPort": "http", "protocol": "TCP"},
                {"name": "weight-sync", "port": rollout.weight_sync_port, "targetPort": "weight-sync",
                 "protocol": "TCP"},
            ],
        },
    }

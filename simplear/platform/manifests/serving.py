"""The KServe InferenceService serving a checkpoint, and the patch that points it at a new one."""

from __future__ import annotations

import copy

from simplear.config import PlatformConfig
from simplear.platform.manifests.labels import NO_SIDECAR, STORE_CLIENT_LABEL, metadata, run_labels
from simplear.platform.manifests.placement import placement, pool, resources
from simplear.platform.manifests.pod_security import (
    container_security_context,
    pod_security_context,
    scratch_mounts,
    scratch_volumes,
)
from simplear.platform.manifests.pull_secrets import image_pull_secrets

CONTAINER = "kserve-container"  # KServe's storage initializer fills /mnt/models for the container of this name
HTTP_PORT = 8080


def _server_container(config: PlatformConfig, model_name: str, storage_uri: str, timeout_s: int,
                      startup_s: int) -> dict:
    """`simplear serve` on the pod IP and 127.0.0.1, the checkpoint from STORAGE_URI, v2 health probes."""
    def probe(path: str) -> dict:
        """An HTTP probe of the server's port."""
        return {"httpGet": {"path": path, "port": HTTP_PORT}, "periodSeconds": 10, "timeoutSeconds": 5}

    return {
        "name": CONTAINER,
        "image": config.images.serve,
        "command": ["simplear", "serve"],
        "args": ["--model-name", model_name, "--model-dir", "/mnt/models", "--host", "$(POD_IP)",
                 "--host", "127.0.0.1", "--http-port", str(HTTP_PORT), "--deadline-s", str(timeout_s)],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "STORAGE_URI", "value": storage_uri},
        ],
        "ports": [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "startupProbe": {**probe("/v2/health/live"), "failureThreshold": -(-startup_s // 10)},
        "livenessProbe": {**probe("/v2/health/live"), "failureThreshold": 3},
        "readinessProbe": {**probe("/v2/health/ready"), "failureThreshold": 3},
        "resources": resources(pool(config, "serve")),
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(shm=False),
    }


def inference_service(
    config: PlatformConfig,
    name: str,
    storage_uri: str,
    service_account: str,
    model_name: str = "simplear",
    namespace: str | None = None,
    timeout_s: int = 300,
    startup_s: int = 600,
) -> dict:
    """A Standard-mode InferenceService on the serve pool; `service_account` links KServe to the store Secret."""
    predictor_labels = {**run_labels("serve", name), **STORE_CLIENT_LABEL}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {**metadata(name, run_labels("serve", name), namespace),
                     "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 1,
                "timeout": timeout_s,
                "serviceAccountName": service_account,
                "automountServiceAccountToken": False,
                "labels": predictor_labels,
                "annotations": dict(NO_SIDECAR),
                "securityContext": pod_security_context(),
                **image_pull_secrets(config),
                **placement(pool(config, "serve")),
                "containers": [_server_container(config, model_name, storage_uri, timeout_s, startup_s)],
                "volumes": scratch_volumes("1Gi", None),
            }
        },
    }


def serve_service_account(config: PlatformConfig, name: str, namespace: str | None = None) -> dict:
    """The predictor's ServiceAccount: KServe hands the storage initializer the store Secret it lists."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(name, run_labels("serve", name), namespace),
        "automountServiceAccountToken": False,
        "secrets": [{"name": config.store_secret}],
    }


def _with_storage_uri(containers: list[dict], storage_uri: str, where: str) -> list[dict]:
    """The predictor's containers with STORAGE_URI of the kserve-container set to storage_uri."""
    updated = copy.deepcopy(containers)
    for container in updated:
        if container.get("name") != CONTAINER:
            continue
        for variable in container.get("env", []):
            if variable.get("name") == "STORAGE_URI":
                variable.pop("valueFrom", None)
                variable["value"] = storage_uri
                return updated
    raise ValueError(f"{where} has no {CONTAINER} with a STORAGE_URI variable: nothing says which model it serves")


def storage_uri_patch(current: dict, storage_uri: str) -> dict:
    """A JSON merge patch of the live InferenceService `current` that serves storage_uri instead.

    A model-format predictor gets a new model.storageUri (its modelFormat restated, as the client model requires);
    a custom predictor (the chart's) a new STORAGE_URI in its kserve-container (a merge patch replaces lists whole,
    so the patch carries every container). The live resourceVersion makes the API server refuse the patch if the
    object changed since it was read.
    """
    if not storage_uri.strip():
        raise ValueError("storage_uri is empty")
    meta = current.get("metadata", {})
    if not meta.get("name"):
        raise ValueError("the InferenceService to patch has no metadata.name")
    where = f"InferenceService {meta['name']}"
    predictor = current.get("spec", {}).get("predictor")
    if not predictor:
        raise ValueError(f"{where} has no spec.predictor")
    if "model" in predictor:
        change = {"model": {"modelFormat": predictor["model"].get("modelFormat", {}), "storageUri": storage_uri}}
    else:
        change = {"containers": _with_storage_uri(predictor.get("containers", []), storage_uri, where)}
    patch_meta = {"name": meta["name"]}
    if "resourceVersion" in meta:
        patch_meta["resourceVersion"] = meta["resourceVersion"]
    return {
        "apiVersion": current.get("apiVersion", "serving.kserve.io/v1beta1"),
        "kind": "InferenceService",
        "metadata": patch_meta,
        "spec": {"predictor": change},
    }

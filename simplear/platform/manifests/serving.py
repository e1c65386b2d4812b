"""Serving the KServe way: the ServingRuntime of model format `simplear` and the InferenceService of one model.

The runtime (installed by the chart, or as a ClusterServingRuntime) holds how the model is served: the serve image,
`simplear serve` on the pod IP and 127.0.0.1, health probes, resources, security and placement. An InferenceService
only names the format and the checkpoint's storageUri; KServe picks the runtime, fills `{{.Name}}` with the
InferenceService's name, and its storage initializer downloads the checkpoint to /mnt/models before the server starts.
"""

from __future__ import annotations

from simplear.platform.config import PlatformConfig, Serving
from simplear.platform.manifests.labels import NO_SIDECAR, STORE_CLIENT_LABEL, metadata, run_labels
from simplear.platform.manifests.placement import placement, pool, resources
from simplear.platform.manifests.pod_security import (
    container_security_context,
    pod_security_context,
    scratch_mounts,
    scratch_volumes,
)
from simplear.platform.manifests.pull_secrets import image_pull_secrets

MODEL_FORMAT = "simplear"
CONTAINER = "kserve-container"  # the container KServe's storage initializer prepares /mnt/models for
HTTP_PORT = 8080
MODEL_DIR = "/mnt/models"
KNATIVE_MODES = ("Knative", "Serverless")
ISVC_LABEL = "serving.kserve.io/inferenceservice"  # KServe's label on an InferenceService's pods
# The storage initializer's arguments are [storageUri, /mnt/models] (kserve pkg/webhook/admission/pod/
# storage_initializer_injector.go): how a pod tells which checkpoint it serves.
STORAGE_INITIALIZER = "storage-initializer"


def serving_of(config: PlatformConfig) -> Serving:
    """The platform's serving settings; a clear error when the chart was installed with kserve.enabled=false."""
    if config.serving is None:
        raise ValueError("this platform serves no models: its chart has kserve.enabled=false")
    return config.serving


def _server_container(config: PlatformConfig, serving: Serving) -> dict:
    """`simplear serve` of the InferenceService named by KServe, on the pod IP and 127.0.0.1, with v2 probes."""
    def probe(path: str) -> dict:
        """An HTTP probe of the server's port."""
        return {"httpGet": {"path": path, "port": HTTP_PORT}, "periodSeconds": 10, "timeoutSeconds": 5}

    container = {
        "name": CONTAINER,
        "image": config.images.serve,
        "command": ["simplear", "serve"],
        "args": ["--model-name", "{{.Name}}", "--model-dir", MODEL_DIR, "--host", "$(POD_IP)", "--host", "127.0.0.1",
                 "--http-port", str(HTTP_PORT), "--deadline-s", str(serving.timeout_seconds)],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "livenessProbe": {**probe("/v2/health/live"), "failureThreshold": 3},
        "readinessProbe": {**probe("/v2/health/ready"), "failureThreshold": 3},
        "resources": resources(pool(config, "serve")),
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(shm=False),
    }
    if serving.deployment_mode in KNATIVE_MODES:  # Knative takes no startup probe: wait out the load instead
        container["livenessProbe"]["initialDelaySeconds"] = serving.startup_seconds
    else:
        container["startupProbe"] = {**probe("/v2/health/live"), "failureThreshold": -(-serving.startup_seconds // 10)}
    return container


def serving_runtime(config: PlatformConfig, labels: dict[str, str] | None = None, namespace: str | None = None
                    ) -> dict:
    """The (Cluster)ServingRuntime of model format simplear: serve image, args, ports, probes, security, placement,
    and KServe's Prometheus annotations for the server's /metrics."""
    serving = serving_of(config)
    kind = "ClusterServingRuntime" if serving.cluster_runtime else "ServingRuntime"
    meta = metadata(serving.runtime, labels if labels is not None else run_labels("serve", serving.runtime),
                    None if serving.cluster_runtime else namespace)
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": {
            "annotations": {"prometheus.kserve.io/port": str(HTTP_PORT), "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [{"name": MODEL_FORMAT, "autoSelect": True}],
            "protocolVersions": ["v1", "v2"],
            **image_pull_secrets(config),
            **placement(pool(config, "serve")),
            "containers": [_server_container(config, serving)],
            "volumes": scratch_volumes("1Gi", None),
        },
    }


def inference_service(config: PlatformConfig, name: str, storage_uri: str, labels: dict[str, str] | None = None,
                      namespace: str | None = None) -> dict:
    """The InferenceService serving the checkpoint at storage_uri with the platform's runtime: model format, replicas
    and autoscaling, deployment strategy, request timeout, and the ServiceAccount that reaches the store Secret."""
    if not storage_uri.strip():
        raise ValueError("storage_uri is empty: name the checkpoint to serve")
    serving = serving_of(config)
    predictor: dict = {
        "minReplicas": serving.min_replicas,
        "maxReplicas": serving.max_replicas,
        "timeout": serving.timeout_seconds,
    }
    if serving.scale_metric is not None:
        predictor |= {"scaleMetric": serving.scale_metric, "scaleTarget": serving.scale_target}
    if serving.deployment_mode not in KNATIVE_MODES:
        predictor["deploymentStrategy"] = {"type": serving.deployment_strategy}
    predictor |= {
        "serviceAccountName": serving.service_account,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "labels": {**run_labels("serve", name, extra=labels), **STORE_CLIENT_LABEL},
        "annotations": dict(NO_SIDECAR),
        "model": {"modelFormat": {"name": MODEL_FORMAT}, "runtime": serving.runtime, "storageUri": storage_uri},
    }
    annotations = {"serving.kserve.io/deploymentMode": serving.deployment_mode}
    if serving.prometheus_scrape:
        annotations["serving.kserve.io/enable-prometheus-scraping"] = "true"
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {**metadata(name, run_labels("serve", name, extra=labels), namespace), "annotations": annotations},
        "spec": {"predictor": predictor},
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


def served_uri(pod: dict) -> str | None:
    """The checkpoint a predictor pod downloaded: its storage initializer's first argument (None without one)."""
    for container in pod.get("spec", {}).get("initContainers", []) or []:
        if container.get("name") == STORAGE_INITIALIZER and container.get("args"):
            return container["args"][0]
    return None

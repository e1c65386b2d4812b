"""Serving the KServe way: the chart installs a ServingRuntime for model format simplear (the same object the platform
builds), no InferenceService until a model exists, the deploy defaults in the platform ConfigMap, the PDB, and a
clear failure when kserve.enabled meets a cluster without KServe."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import pytest
from helpers import chart_platform_config, find, notes, objects, one, parse, render_values, validation_errors

from simplear.platform.config import PlatformConfig
from simplear.platform.manifests import inference_service, serving_runtime


def runtime(value_set: str = "default", values: dict | None = None, kind: str = "ServingRuntime") -> dict:
    """The (Cluster)ServingRuntime a value set (or explicit values) renders."""
    docs = objects(value_set) if values is None else parse(render_values(values))
    return one(docs, kind)


def quantities_as_strings(value: Any) -> Any:
    """Resource amounts as the API server answers them (Helm writes an integer GPU count)."""
    if isinstance(value, dict):
        return {k: quantities_as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [quantities_as_strings(v) for v in value]
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


@pytest.mark.parametrize(("value_set", "kind"), [("default", "ServingRuntime"), ("custom-pools", "ServingRuntime"),
                                                 ("serving-options", "ClusterServingRuntime")])
def test_the_charts_runtime_is_the_one_the_platform_builds(value_set: str, kind: str) -> None:
    """Helm's ServingRuntime and simplear.platform.manifests.serving_runtime agree field for field (the image pull
    policy is the chart's own), for the chart's platform config of each value set; both validate."""
    rendered = runtime(value_set, kind=kind)
    built = serving_runtime(chart_platform_config(value_set))
    container = rendered["spec"]["containers"][0]
    assert container.pop("imagePullPolicy") == "IfNotPresent"
    assert (rendered["kind"], rendered["metadata"]["name"]) == (built["kind"], built["metadata"]["name"])
    assert quantities_as_strings(rendered["spec"]) == quantities_as_strings(built["spec"])
    assert validation_errors(rendered) == validation_errors(built) == []


def test_the_runtime_serves_model_format_simplear_with_the_serve_image() -> None:
    """Model format simplear, v1 and v2, `simplear serve` named after the InferenceService ({{.Name}}) on 8080,
    binding the pod IP and 127.0.0.1 (never 0.0.0.0), probes on KServe's health routes, Prometheus annotations."""
    spec = runtime()["spec"]
    assert spec["supportedModelFormats"] == [{"name": "simplear", "autoSelect": True}]
    assert spec["protocolVersions"] == ["v1", "v2"]
    assert spec["annotations"] == {"prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics"}
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container" and container["image"] == "ghcr.io/simplear/simplear-serve:0.1.0"
    assert container["command"] + container["args"] == [
        "simplear", "serve", "--model-name", "{{.Name}}", "--model-dir", "/mnt/models", "--host", "$(POD_IP)",
        "--host", "127.0.0.1", "--http-port", "8080", "--deadline-s", "300"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] == 600
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_knative_mode_waits_out_the_load_without_a_startup_probe() -> None:
    """In Knative mode the liveness probe starts after startupSeconds instead."""
    (container,) = runtime(values={"kserve": {"deploymentMode": "Knative", "startupSeconds": 900}})["spec"][
        "containers"]
    assert "startupProbe" not in container
    assert container["livenessProbe"]["initialDelaySeconds"] == 900


def test_install_without_a_model_creates_no_predictor() -> None:
    """No InferenceService in any value set: nothing holds a GPU before a model exists, and helm test does not wait
    for one unless asked (kserve.testModel, once a model is deployed)."""
    for value_set in ("default", "custom-pools", "kfp", "serving-options"):
        assert not find(objects(value_set), "InferenceService")
    (container,) = one(objects("default"), "Pod", "simplear-test")["spec"]["containers"]
    assert "MODEL_READY_URL" not in {variable["name"] for variable in container["env"]}
    (asked,) = one(objects("serving-options"), "Pod", "simplear-test")["spec"]["containers"]
    assert {"name": "MODEL_READY_URL", "value": "http://shapes-predictor.ml-platform.svc/v2/health/ready"} in asked[
        "env"]


def test_the_deploy_defaults_are_in_the_platform_config() -> None:
    """What the deploy step and `simplear deploy` put in an InferenceService comes from the chart's values: runtime,
    replicas, autoscaling, strategy (Recreate for a GPU serve pool), timeout, scrape annotation, service account."""
    default = chart_platform_config("default")
    assert default.inference_service == "simplear"
    assert default.serving is not None and default.serving.runtime == "simplear-runtime"
    assert default.serving.deployment_strategy == "Recreate"
    options = chart_platform_config("serving-options")
    assert options.inference_service == "shapes" and options.serving.cluster_runtime
    isvc = inference_service(options, options.inference_service, "s3://simplear-checkpoints/runs/7/grpo/final")
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 4)
    assert predictor["deploymentStrategy"] == {"type": "RollingUpdate"}
    assert predictor["model"] == {"modelFormat": {"name": "simplear"}, "runtime": "simplear-gpu",
                                  "storageUri": "s3://simplear-checkpoints/runs/7/grpo/final"}
    assert predictor["serviceAccountName"] == "simplear-serve" and predictor["automountServiceAccountToken"] is False
    assert "serving.kserve.io/enable-prometheus-scraping" not in isvc["metadata"]["annotations"]
    assert validation_errors(isvc) == []
    scraped = inference_service(default, "simplear", "s3://c/m")
    assert scraped["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert scraped["spec"]["predictor"]["deploymentStrategy"] == {"type": "Recreate"}
    assert "scaleMetric" not in scraped["spec"]["predictor"]


def test_a_cpu_serve_pool_rolls_and_knative_has_no_strategy() -> None:
    """A serve pool without GPUs keeps serving during an update (RollingUpdate); Knative rolls its own revisions."""
    pools = {"serve": {"nodeSelector": {}, "tolerations": [], "affinity": {}, "gpuResource": "nvidia.com/gpu",
                       "gpus": 0, "cpu": "4", "memory": "16Gi"}}
    docs = parse(render_values({"pools": pools, "kserve": {"deploymentMode": "Knative"}}))
    config = json.loads(one(docs, "ConfigMap", "simplear-platform")["data"]["platform.json"])
    assert config["serving"]["deploymentStrategy"] == "RollingUpdate"
    isvc = inference_service(PlatformConfig.model_validate(config), "simplear", "s3://c/m")
    assert "deploymentStrategy" not in isvc["spec"]["predictor"]


def test_the_pdb_covers_the_predictor_pods_of_the_inferenceservice() -> None:
    """A PodDisruptionBudget on KServe's predictor labels of the platform's InferenceService, when enabled."""
    pdb = one(objects("serving-options"), "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {
        "serving.kserve.io/inferenceservice": "shapes", "component": "predictor"}}}
    assert not find(objects("default"), "PodDisruptionBudget")


def test_the_predictor_reaches_the_store_secret_through_its_own_service_account() -> None:
    """The predictor's ServiceAccount lists the store Secret (KServe's link) and mounts no API token."""
    account = one(objects("default"), "ServiceAccount", "simplear-serve")
    assert account["secrets"] == [{"name": "simplear-store"}]
    assert account["automountServiceAccountToken"] is False
    assert one(objects("external-s3"), "ServiceAccount", "simplear-serve")["secrets"] == [
        {"name": "aws-s3-credentials"}]


def test_kserve_disabled_renders_no_serving_objects() -> None:
    """kserve.enabled=false: no runtime, no serve account, no serving in the platform config or NOTES."""
    docs = objects("kserve-disabled")
    assert not find(docs, "ServingRuntime") and not find(docs, "ServiceAccount", "simplear-serve")
    assert chart_platform_config("kserve-disabled").serving is None
    assert ":predict" not in notes("kserve-disabled")


def test_install_fails_with_a_clear_message_when_kserve_is_missing() -> None:
    """kserve.enabled on a cluster without KServe's CRDs: `helm install` fails and names them (guarded by
    .Capabilities.APIVersions); with kserve.enabled=false it installs; `helm lint` renders without them."""
    with pytest.raises(helm.HelmRenderError, match=r"kserve.enabled=true, but this cluster has no "
                                                   r"serving.kserve.io/v1alpha1/ServingRuntime and "
                                                   r"serving.kserve.io/v1beta1/InferenceService: install KServe"):
        render_values({}, api_versions=())
    with pytest.raises(helm.HelmRenderError, match="no serving.kserve.io/v1alpha1/ClusterServingRuntime: install"):
        render_values({"kserve": {"runtime": {"name": "", "cluster": True}}},
                      api_versions=("serving.kserve.io/v1alpha1/ServingRuntime",
                                    "serving.kserve.io/v1beta1/InferenceService"))
    assert not find(parse(render_values({"kserve": {"enabled": False}}, api_versions=())), "ServingRuntime")


def test_notes_say_how_to_serve_a_model() -> None:
    """NOTES name the runtime, `simplear deploy` and the routes of the InferenceService once it exists."""
    text = notes("default")
    for expected in ("ServingRuntime simplear-runtime", "simplear deploy -n ml-platform --model s3://",
                     "/v1/models/simplear:predict", "/v2/models/simplear/infer", "/openai/v1/images/generations"):
        assert expected in text, expected

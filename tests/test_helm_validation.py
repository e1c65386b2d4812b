"""Every rendered object is valid Kubernetes: core kinds against the API schemas (strict), CRD kinds against CRDs."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from test_helm_render import VALUE_SETS, objects
from test_platform_support import chart_platform_config

from simplear.platform.manifests import inference_service

# The chart's kubeVersion floor (Chart.yaml) and the newest API schemas kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
# The CRDs of the cluster add-ons the platform targets (Kubeflow Training Operator, KServe).
CRD_DIR = Path(__file__).parent / "crds"
CRD_FILES = {
    ("kubeflow.org/v1", "PyTorchJob"): "kubeflow.org_pytorchjobs.yaml",
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "serving.kserve.io_servingruntimes.yaml",
    # KServe's ClusterServingRuntime is the same ServingRuntimeSpec, cluster-scoped (pkg/apis/serving/v1alpha1).
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "serving.kserve.io_servingruntimes.yaml",
}


def forbid_unknown_fields(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the API server would prune them (kubectl --validate=strict)."""
    if isinstance(schema, list):
        return [forbid_unknown_fields(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: forbid_unknown_fields(value) for key, value in schema.items()}
    open_object = "properties" in schema and "additionalProperties" not in schema
    if open_object and not schema.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    """Validator of one custom kind from its CRD's openAPIV3Schema, for the served version."""
    crd = yaml.load((CRD_DIR / CRD_FILES[(api_version, kind)]).read_text(), Loader=yaml.CSafeLoader)
    version = api_version.split("/")[1]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return jsonschema.Draft7Validator(forbid_unknown_fields(served["schema"]["openAPIV3Schema"]))


def validation_errors(doc: dict[str, Any], kubernetes_version: str = KUBERNETES_VERSIONS[-1]) -> list[str]:
    """Why doc is not a valid object of its kind (core kinds: in that Kubernetes version); empty when it is."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_FILES:
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(*key).iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(map(str, error.path))}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [error.message]
    return []


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_object_validates(value_set: str, kubernetes_version: str) -> None:
    """Each object of each value set passes its schema, on the oldest and newest supported Kubernetes."""
    problems = {
        f"{doc['kind']}/{doc['metadata']['name']}": errors
        for doc in objects(value_set)
        if (errors := validation_errors(doc, kubernetes_version))
    }
    assert problems == {}


def test_core_validation_refuses_unknown_fields_and_wrong_types() -> None:
    """The core path is strict: a misspelt field and a wrong type are both reported."""
    (deployment,) = [d for d in objects("default") if d["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "IfNotPresent"
    deployment["spec"]["replicas"] = "one"
    assert validation_errors(deployment)


def test_crd_validation_refuses_unknown_fields_and_wrong_types() -> None:
    """The CRD path is strict too: a misspelt predictor field, then a string replica count."""
    platform = chart_platform_config("default")
    isvc = inference_service(platform, platform.inference_service, "s3://bucket/model")
    isvc["spec"]["predictor"]["storageURI"] = "s3://bucket/model"
    assert any("storageURI" in e for e in validation_errors(isvc))
    del isvc["spec"]["predictor"]["storageURI"]
    isvc["spec"]["predictor"]["minReplicas"] = "1"
    assert any("minReplicas" in e for e in validation_errors(isvc))


def test_every_platform_crd_kind_is_checked_against_its_crd() -> None:
    """PyTorchJob and ServingRuntime (made by pipelines, not the chart) validate the same way."""
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "pretrain"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "template": {"spec": {"containers": [{"name": "pytorch", "image": "simplear-train:0.1.0"}]}},
                }
            }
        },
    }
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "simplear"},
        "spec": {
            "supportedModelFormats": [{"name": "simplear"}],
            "containers": [{"name": "kserve-container", "image": "simplear-serve:0.1.0"}],
        },
    }
    assert validation_errors(job) == []
    assert validation_errors(runtime) == []
    job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "one"
    runtime["spec"]["containers"][0]["imagee"] = "typo"
    assert validation_errors(job) and validation_errors(runtime)

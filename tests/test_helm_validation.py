"""Every rendered object is valid Kubernetes: core kinds against the API schemas (strict), CRD kinds against CRDs."""

from __future__ import annotations

import pytest
from helpers import KUBERNETES_VERSIONS, VALUE_SETS, chart_platform_config, objects, validation_errors

from simplear.platform.manifests import inference_service


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

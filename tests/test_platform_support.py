"""Helpers the platform tests share (no tests here): platform configs from the chart, pods of objects, parsing."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from kubernetes.client import ApiClient as KubernetesApiClient
from test_helm_render import objects, one

from simplear.config import PlatformConfig


@cache
def chart_platform_config(value_set: str) -> PlatformConfig:
    """The PlatformConfig the chart renders into its platform ConfigMap for a value set."""
    configmap = one(objects(value_set), "ConfigMap", "simplear-platform")
    return PlatformConfig.model_validate_json(configmap["data"]["platform.json"])


def pod_specs_of(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod metadata, pod spec) of every pod template an object holds."""
    kind = doc["kind"]
    if kind == "PyTorchJob":
        return [(f"{kind}/{doc['metadata']['name']}/{replica}", spec["template"]["metadata"], spec["template"]["spec"])
                for replica, spec in doc["spec"]["pytorchReplicaSpecs"].items()]
    if kind == "Deployment":
        return [(f"{kind}/{doc['metadata']['name']}", doc["spec"]["template"]["metadata"],
                 doc["spec"]["template"]["spec"])]
    if kind == "InferenceService":
        predictor = doc["spec"]["predictor"]
        return [(f"{kind}/{doc['metadata']['name']}", {"labels": predictor.get("labels", {}),
                                                       "annotations": predictor.get("annotations", {})}, predictor)]
    return []


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Init and regular containers of a pod spec."""
    return spec.get("initContainers", []) + spec["containers"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of target, as the API server applies a merge-patch+json body."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class JsonResponse:
    """A response body as the generated API clients read it (`.data` holding JSON text)."""

    def __init__(self, body: Any) -> None:
        self.data = json.dumps(body)


def kubernetes_object(body: dict[str, Any], kind: str) -> Any:
    """An API server answer parsed by the kubernetes client, e.g. kind V1PodList."""
    return KubernetesApiClient().deserialize(JsonResponse(body), kind)


def pytorchjob_object(body: dict[str, Any]) -> Any:
    """An API server answer parsed by the kubeflow-training client into a KubeflowOrgV1PyTorchJob."""
    from kubeflow.training.api_client import ApiClient

    return ApiClient().deserialize(JsonResponse(body), "KubeflowOrgV1PyTorchJob")

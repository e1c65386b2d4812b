"""Plain-dict manifests as the client-model objects the kubeflow-training and KServe clients take, and back."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient as KubernetesApiClient
from kubernetes.client import V1ObjectMeta


class _Response:
    """A client response holding a JSON body, which the generated clients know how to deserialize."""

    def __init__(self, body: dict) -> None:
        self.data = json.dumps(body)


def to_dict(model: Any) -> Any:
    """A client-model object (or anything holding them) as the JSON the API server would get."""
    return KubernetesApiClient().sanitize_for_serialization(model)


def as_pytorchjob(job: dict) -> Any:
    """The PyTorchJob dict as a KubeflowOrgV1PyTorchJob, what TrainingClient.create_job takes."""
    from kubeflow.training.api_client import ApiClient

    return ApiClient().deserialize(_Response(job), "KubeflowOrgV1PyTorchJob")


def as_inference_service(isvc: dict) -> Any:
    """An InferenceService patch (predictor containers or model) as the V1beta1InferenceService KServeClient takes."""
    from kserve import (
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
    )

    kubernetes = KubernetesApiClient()
    predictor = isvc["spec"]["predictor"]
    unknown = set(predictor) - {"containers", "model"}
    if unknown:
        raise ValueError(f"only predictor containers or model can be patched, not {', '.join(sorted(unknown))}")
    fields: dict[str, Any] = {}
    if "containers" in predictor:
        fields["containers"] = [kubernetes.deserialize(_Response(c), "V1Container") for c in predictor["containers"]]
    if "model" in predictor:
        model = predictor["model"]
        model_format = model.get("modelFormat") or {}
        fields["model"] = V1beta1ModelSpec(
            model_format=V1beta1ModelFormat(name=model_format.get("name"), version=model_format.get("version")),
            storage_uri=model.get("storageUri"),
            name=model.get("name"),  # the client's default "" would rename the container
        )
    meta = isvc["metadata"]
    return V1beta1InferenceService(
        api_version=isvc["apiVersion"],
        kind=isvc["kind"],
        metadata=V1ObjectMeta(name=meta["name"], resource_version=meta.get("resourceVersion")),
        spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(**fields)),
    )


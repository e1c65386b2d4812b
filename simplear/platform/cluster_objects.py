"""Plain-dict manifests as the client-model objects the kubeflow-training client takes, and back."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient as KubernetesApiClient


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

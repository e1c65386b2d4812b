"""Clients of one cluster (kubeconfig or in-cluster) and the namespace to work in; the only place that connects.

PyTorchJobs go through the kubeflow-training client; InferenceServices through a thin client over the Kubernetes
CustomObjectsApi (the kserve package would bring its model server's dependencies into the torch-free base image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
# Answers worth asking again whatever was asked: throttling and the 5xx of an API server restarting or overloaded.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class ClusterUnavailable(RuntimeError):
    """No cluster to talk to: no usable kubeconfig and not inside a pod."""


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of an API refusal, also when a client wrapped it (TrainingClient raises RuntimeError from it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ApiException):
            return seen.status
        seen = seen.__cause__ or seen.__context__
    return None


def is_transient(exc: BaseException, statuses: frozenset[int] = TRANSIENT_STATUSES) -> bool:
    """Whether an API call failed in a way that asking again may fix: a listed status, or a dropped connection."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ApiException):
            return seen.status in statuses
        if isinstance(seen, HTTPError | ConnectionError | TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class InferenceServices:
    """get / list / create / replace of KServe InferenceServices, as KServeClient does them."""

    def __init__(self, custom: client.CustomObjectsApi) -> None:
        self.custom = custom

    def get(self, name: str, namespace: str) -> dict:
        """One InferenceService as the API server returns it."""
        return self.custom.get_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name)

    def list(self, namespace: str) -> list[dict]:
        """Every InferenceService of the namespace."""
        return self.custom.list_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL)["items"]

    def create(self, namespace: str, body: dict) -> dict:
        """Create an InferenceService; the object as stored."""
        return self.custom.create_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, body)

    def replace(self, name: str, namespace: str, body: dict) -> dict:
        """Replace (PUT) an InferenceService; body carries the resourceVersion it was read at. The object as stored."""
        return self.custom.replace_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name,
                                                            body)


@dataclass
class ClusterClients:
    """The API clients the platform uses and the namespace they work in."""

    namespace: str
    core: client.CoreV1Api
    apps: client.AppsV1Api
    training: Any
    isvcs: InferenceServices
    kubeconfig: str | None = None
    context: str | None = None


def _kubeconfig_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig's chosen (or current) context, else default."""
    contexts, current = kube_config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return (chosen or {}).get("context", {}).get("namespace") or "default"


def connect(kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None) -> ClusterClients:
    """Clients of the kubeconfig's cluster (in a pod, without a kubeconfig: its own); ClusterUnavailable if none."""
    from kubeflow.training import TrainingClient

    in_cluster = kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ
    try:
        if in_cluster:
            kube_config.load_incluster_config()
            namespace = namespace or SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        else:
            kube_config.load_kube_config(config_file=kubeconfig, context=context)
            namespace = namespace or _kubeconfig_namespace(kubeconfig, context)
    except (ConfigException, OSError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ClusterUnavailable(f"no cluster to talk to (kubeconfig {where}): {exc}") from None
    configuration = client.Configuration.get_default_copy()
    api = client.ApiClient(configuration)
    return ClusterClients(
        namespace=namespace,
        core=client.CoreV1Api(api),
        apps=client.AppsV1Api(api),
        training=TrainingClient(client_configuration=configuration, namespace=namespace),
        isvcs=InferenceServices(client.CustomObjectsApi(api)),
        kubeconfig=kubeconfig,
        context=context,
    )

"""Clients of one cluster (kubeconfig or in-cluster) and the namespace to work in; the only place that connects."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.config.config_exception import ConfigException

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ClusterUnavailable(RuntimeError):
    """No cluster to talk to: no usable kubeconfig and not inside a pod."""


@dataclass
class ClusterClients:
    """The API clients the platform uses and the namespace they work in."""

    namespace: str
    core: client.CoreV1Api
    apps: client.AppsV1Api
    training: Any
    kserve: Any
    kubeconfig: str | None = None
    context: str | None = None


def _kubeconfig_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig's chosen (or current) context, else default."""
    contexts, current = kube_config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return (chosen or {}).get("context", {}).get("namespace") or "default"


def connect(kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None) -> ClusterClients:
    """Clients of the kubeconfig's cluster (in a pod, without a kubeconfig: its own); ClusterUnavailable if none."""
    from kserve import KServeClient
    from kubeflow.training import TrainingClient

    in_cluster = kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ
    try:
        if in_cluster:
            kube_config.load_incluster_config()
            namespace = namespace or SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        else:
            kube_config.load_kube_config(config_file=kubeconfig, context=context)
            namespace = namespace or _kubeconfig_namespace(kubeconfig, context)
        kserve = KServeClient(config_file=kubeconfig, context=context) if not in_cluster else KServeClient()
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
        kserve=kserve,
        kubeconfig=kubeconfig,
        context=context,
    )

"""Helpers the platform tests share (no tests here): platform configs from the chart, pods of objects, parsing."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from kubernetes.client import ApiClient as KubernetesApiClient
from test_helm_render import objects, one

from simplear.platform.config import PlatformConfig


@cache
def chart_platform_config(value_set: str) -> PlatformConfig:
    """The PlatformConfig the chart renders into its platform ConfigMap for a value set."""
    configmap = one(objects(value_set), "ConfigMap", "simplear-platform")
    return PlatformConfig.model_validate_json(configmap["data"]["platform.json"])


def pod_specs_of(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod metadata, pod spec) of every pod template an object holds (an InferenceService's pod is its
    runtime's merged with it: test_helm_render.kserve_pod)."""
    kind = doc["kind"]
    if kind == "PyTorchJob":
        return [(f"{kind}/{doc['metadata']['name']}/{replica}", spec["template"]["metadata"], spec["template"]["spec"])
                for replica, spec in doc["spec"]["pytorchReplicaSpecs"].items()]
    if kind == "Deployment":
        return [(f"{kind}/{doc['metadata']['name']}", doc["spec"]["template"]["metadata"],
                 doc["spec"]["template"]["spec"])]
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


# Pod Security Standards, "restricted" profile, as the pod-security-admission library checks it (kubernetes
# staging/src/k8s.io/pod-security-admission/policy: check_*.go, latest version): the baseline checks plus restricted
# volume types, no privilege escalation, non-root, seccomp and capabilities.
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                                "projected", "secret"})
SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                          "net.ipv4.ip_unprivileged_port_start",
                          "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                          "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                          "net.ipv4.tcp_keepalive_probes"})


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Why a pod spec fails Pod Security "restricted"; empty when it passes."""
    found = []
    pod_context = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(f"host namespaces: {key}")
    for volume in spec.get("volumes", []):
        kind = next(k for k in volume if k != "name")
        if kind not in RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']} of type {kind}")
    found += [f"unsafe sysctl {s['name']}" for s in pod_context.get("sysctls", []) if s["name"] not in SAFE_SYSCTLS]
    if pod_context.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    every = spec.get("initContainers", []) + spec.get("containers", []) + spec.get("ephemeralContainers", [])
    for container in every:
        name, context = container["name"], container.get("securityContext", {})
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation != false")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities must drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities add {capabilities['add']}")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot != true")
        if context.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
    return found

"""Security defaults hold on every pod the chart renders, in every value set."""

from __future__ import annotations

import re
from typing import Any

import pytest
from helpers import VALUE_SETS, find, objects, parse, pod_specs, render_values

SECRET_LIKE = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
PINNED_IMAGE = re.compile(r"^[^:@\s]+(:[^:@\s/]+)?(@sha256:[a-f0-9]{64})?$")


def all_pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(value set and workload, pod spec) across every value set."""
    return [(f"{value_set}:{where}", spec) for value_set in VALUE_SETS for where, spec in pod_specs(objects(value_set))]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Init and regular containers of a pod spec."""
    return spec.get("initContainers", []) + spec["containers"]


PODS = all_pod_specs()
POD_IDS = [where for where, _ in PODS]


@pytest.mark.parametrize(("where", "spec"), PODS, ids=POD_IDS)
def test_pod_runs_as_a_fixed_non_root_user_with_runtime_default_seccomp(where: str, spec: dict[str, Any]) -> None:
    """runAsNonRoot, a fixed non-zero UID and GID, RuntimeDefault seccomp at pod level."""
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] > 0 and context["runAsGroup"] > 0
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("where", "spec"), PODS, ids=POD_IDS)
def test_containers_drop_everything_and_cannot_escalate(where: str, spec: dict[str, Any]) -> None:
    """No privilege escalation, every capability dropped and none added, read-only root, non-root."""
    for container in containers(spec):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context.get("privileged", False) is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["runAsNonRoot"] is True
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("where", "spec"), PODS, ids=POD_IDS)
def test_read_only_containers_get_a_writable_tmp(where: str, spec: dict[str, Any]) -> None:
    """/tmp is an emptyDir with a size limit, since the root filesystem is read-only."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in containers(spec):
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert volumes[tmp["name"]]["emptyDir"]["sizeLimit"]


@pytest.mark.parametrize(("where", "spec"), PODS, ids=POD_IDS)
def test_containers_set_cpu_and_memory_requests_and_limits(where: str, spec: dict[str, Any]) -> None:
    """Requests and limits for cpu and memory on every container."""
    for container in containers(spec):
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][bound].keys(), f"{container['name']} {bound}"


@pytest.mark.parametrize(("where", "spec"), PODS, ids=POD_IDS)
def test_pods_stay_off_the_host(where: str, spec: dict[str, Any]) -> None:
    """No hostPath volume, host network, PID or IPC namespace."""
    assert all("hostPath" not in volume for volume in spec.get("volumes", []))
    assert not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))


@pytest.mark.parametrize(("where", "spec"), PODS, ids=POD_IDS)
def test_secrets_reach_containers_only_by_reference(where: str, spec: dict[str, Any]) -> None:
    """Every secret-looking variable comes from a secretKeyRef, never a literal value."""
    for container in containers(spec):
        for variable in container.get("env", []):
            if SECRET_LIKE.search(variable["name"]):
                assert "value" not in variable, variable["name"]
                assert variable["valueFrom"]["secretKeyRef"]["key"], variable["name"]


@pytest.mark.parametrize(("where", "spec"), PODS, ids=POD_IDS)
def test_pods_get_no_kubernetes_api_token(where: str, spec: dict[str, Any]) -> None:
    """None of the chart's own pods talks to the Kubernetes API, so none mounts a token."""
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize(("where", "spec"), PODS, ids=POD_IDS)
def test_images_are_pinned_and_pulled_if_not_present(where: str, spec: dict[str, Any]) -> None:
    """Every image has an exact tag (never latest) and imagePullPolicy IfNotPresent."""
    for container in containers(spec):
        image = container["image"]
        assert PINNED_IMAGE.match(image) and ":" in image.rsplit("/", 1)[-1], image
        assert not image.split("@")[0].endswith(":latest"), image
        assert container["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_only_the_pipeline_service_account_mounts_a_token(value_set: str) -> None:
    """ServiceAccounts default to no token; the pipeline runner's is the one that needs it."""
    accounts = find(objects(value_set), "ServiceAccount")
    mounting = {sa["metadata"]["name"] for sa in accounts if sa.get("automountServiceAccountToken", True)}
    assert mounting == {"simplear-pipeline"}


def test_a_digest_pins_the_image_further() -> None:
    """An image digest in values is appended to the reference."""
    digest = "sha256:" + "ab" * 32
    docs = parse(render_values({"images": {"serve": {"digest": digest}}}))
    (runtime,) = find(docs, "ServingRuntime")
    assert runtime["spec"]["containers"][0]["image"] == f"ghcr.io/simplear/simplear-serve:0.1.0@{digest}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_hook_jobs_and_the_test_pod_opt_out_of_istio_injection(value_set: str) -> None:
    """An injected Istio proxy never exits, so a Job or test pod with one never completes (profile namespaces of
    multi-user Kubeflow inject by default): every hook pod says sidecar.istio.io/inject: "false"."""
    hooks = [doc for doc in objects(value_set) if "helm.sh/hook" in doc["metadata"].get("annotations", {})]
    assert "Pod" in {doc["kind"] for doc in hooks}
    for doc in hooks:
        template = doc["spec"]["template"]["metadata"] if doc["kind"] == "Job" else doc["metadata"]
        assert template.get("annotations", {}).get("sidecar.istio.io/inject") == "false", doc["metadata"]["name"]

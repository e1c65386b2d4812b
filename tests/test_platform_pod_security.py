"""Pod Security "restricted" holds for every pod the platform makes: stage jobs (the GRPO master with its rollout
sidecar included), the pool rollout server, the chart's pods and the served model's pod. The one container the
platform does not write, the training operator's injected init-pytorch, passes only with the chart's template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    CHART,
    CONFIGS,
    GRPO,
    VALUE_SETS,
    chart_platform_config,
    kserve_pod,
    objects,
    pod_specs,
    pod_specs_of,
    restricted_violations,
    stage_objects,
)

from simplear.platform.manifests import pytorch_job

# The operator's built-in template (training-operator pkg/controller.v1/pytorch/initcontainer.go, v1.8+), as it
# appends it to the initContainers of every Worker pod of a job with a Master.
OPERATOR_DEFAULT = """
- name: init-pytorch
  image: {{.InitContainerImage}}
  imagePullPolicy: IfNotPresent
  resources:
    limits:
      cpu: 100m
      memory: 20Mi
    requests:
      cpu: 50m
      memory: 10Mi
  command: ['sh', '-c', '{loop}']
""".replace("{loop}", "err=1;for i in $(seq {{.MaxTries}}); do if nslookup {{.MasterAddr}}; then err=0 && break; "
                      "fi;echo waiting for master; sleep 2; done; exit $err")
RESTRICTED_TEMPLATE = CHART / "files" / "training-operator" / "init-pytorch-restricted.yaml"


def operator_init_container(template: str, master: str) -> list[dict[str, Any]]:
    """The init containers the operator renders from a template (Go template fields filled as it fills them)."""
    text = (template.replace("{{.InitContainerImage}}", "docker.io/alpine:3.10").replace("{{.MaxTries}}", "100")
            .replace("{{.MasterAddr}}", master))
    return yaml.safe_load(text)


def with_operator_init(job: dict[str, Any], template: str) -> dict[str, Any]:
    """A Worker pod spec as the operator creates it: the template's init container appended."""
    worker = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    master = f"{job['metadata']['name']}-master-0"
    return {**worker, "initContainers": worker.get("initContainers", []) + operator_init_container(template, master)}


@pytest.mark.parametrize("value_set", CONFIGS)
def test_every_stage_pod_passes_restricted(value_set: str) -> None:
    """Every PyTorchJob replica (two nodes; GRPO with a sidecar and on the pool), the rollout Deployment and the served
    model's pod (runtime and InferenceService merged as KServe does)."""
    docs = stage_objects(chart_platform_config(value_set))
    pods = [(where, spec) for doc in docs for where, _, spec in pod_specs_of(doc)]
    (runtime,) = [doc for doc in docs if doc["kind"] == "ServingRuntime"]
    (isvc,) = [doc for doc in docs if doc["kind"] == "InferenceService"]
    pods.append(("predictor", kserve_pod(runtime, isvc)))
    problems = {where: found for where, spec in pods if (found := restricted_violations(spec))}
    assert problems == {}


def test_the_grpo_master_with_its_rollout_sidecar_passes_restricted() -> None:
    """The sidecar is a restricted container like the trainer: no escalation, no capabilities, non-root."""
    job = pytorch_job(chart_platform_config("default"), "grpo", GRPO)
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    (sidecar,) = master["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert restricted_violations(master) == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_chart_pod_passes_restricted(value_set: str) -> None:
    """MinIO, the hook Jobs, helm test and the pod of a model served with the chart's runtime."""
    problems = {where: found for where, spec in pod_specs(objects(value_set))
                if (found := restricted_violations(spec))}
    assert problems == {}


def test_the_operators_default_init_pytorch_fails_restricted_and_the_charts_template_passes() -> None:
    """A Worker pod with the operator's built-in init-pytorch fails on the container-level fields a pod cannot set
    for it; with helm/simplear/files/training-operator/init-pytorch-restricted.yaml it passes."""
    job = pytorch_job(chart_platform_config("default"), "pretrain", GRPO.model_copy(update={"rollout": None, "nodes": 2,
                                                                            "args": ()}))
    assert "Worker" in job["spec"]["pytorchReplicaSpecs"]
    assert sorted(restricted_violations(with_operator_init(job, OPERATOR_DEFAULT))) == [
        "init-pytorch: allowPrivilegeEscalation != false", "init-pytorch: capabilities must drop ALL"]
    ours = with_operator_init(job, RESTRICTED_TEMPLATE.read_text())
    assert [c["name"] for c in ours["initContainers"]] == ["init-pytorch"]
    assert restricted_violations(ours) == []
    assert "{{.MasterAddr}}" in RESTRICTED_TEMPLATE.read_text() and "{{.MaxTries}}" in RESTRICTED_TEMPLATE.read_text()


def test_the_checker_refuses_what_restricted_refuses() -> None:
    """Privileged, root, hostPath, host network, added capabilities and an unconfined seccomp are each reported."""
    spec = {"hostNetwork": True, "securityContext": {"runAsUser": 0},
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "ports": [{"containerPort": 1, "hostPort": 1}], "securityContext": {
                "privileged": True, "capabilities": {"add": ["SYS_ADMIN"]},
                "seccompProfile": {"type": "Unconfined"}}}]}
    found = " | ".join(restricted_violations(spec))
    for expected in ("hostNetwork", "hostPath", "pod runAsUser 0", "c: privileged", "c: hostPort",
                     "allowPrivilegeEscalation", "capabilities must drop ALL", "capabilities add ['SYS_ADMIN']",
                     "runAsNonRoot", "seccompProfile Unconfined"):
        assert expected in found, expected
    assert Path(RESTRICTED_TEMPLATE).is_file()

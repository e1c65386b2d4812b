"""The pipeline runs' ServiceAccount gets what Kubeflow Pipelines' runtime needs (checked against KFP's own
pipeline-runner Role) and what the platform's code calls (recorded against a simulated API server), nothing more."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml
from helpers import NAMESPACE, VALUE_SETS, find, launcher_for, live_isvc, objects, one, parse, render_values
from kube_api_sim import Call, FakeCluster, PodScript, rule_grants

from simplear.cli import main as simplear
from simplear.platform.cluster_clients import connect
from simplear.platform.launcher import StageFailed
from simplear.platform.platform_discovery import find_platform
from simplear.platform.stage_spec import RolloutSpec, StageSpec

KFP = Path(__file__).resolve().parent / "kfp"
# The newest KFP backend release, whose SDK (kfp 2.17.3) compiles our pipelines, and the oldest one they run on
# (2.5.0: the driver resolves nodeSelectorJson, tolerationJson and Secret / ConfigMap names from parameters).
KFP_VERSION, KFP_MINIMUM = "2.17.0", "2.5.0"

# What KFP's own runtime asks the API server in a run's namespace, as the run's ServiceAccount (kubeflow/pipelines
# at KFP_VERSION): (API group, resource, verb, object name, where upstream makes the call).
KFP_RUNTIME = [
    ("argoproj.io", "workflowtaskresults", "create", "", "Argo's executor reports a step's outputs (Argo >= 3.4)"),
    ("argoproj.io", "workflowtaskresults", "patch", "", "Argo's executor reports a step's outputs (Argo >= 3.4)"),
    ("", "configmaps", "get", "kfp-launcher", "backend/src/v2/config/env.go FromConfigMap: only NotFound tolerated"),
    ("", "secrets", "get", "mlpipeline-minio-artifact",
     "backend/src/v2/objectstore/object_store.go getS3BucketCredential (config/env.go minioArtifactSecretName)"),
    ("", "pods", "get", "step-pod", "backend/src/v2/component/launcher_v2.go retryIndexFromPodAnnotation"),
]


def upstream_role(version: str) -> dict:
    """KFP's pipeline-runner Role at a release (tests/kfp/pipeline-runner-role-<version>.yaml)."""
    return yaml.safe_load((KFP / f"pipeline-runner-role-{version}.yaml").read_text())


def rendered_role(values: dict | None = None) -> dict:
    """The chart's pipeline Role."""
    docs = parse(render_values(values)) if values else objects("default")
    return one(docs, "Role", "simplear-pipeline")


@pytest.mark.parametrize(("group", "resource", "verb", "name", "where"), KFP_RUNTIME)
def test_kfp_pipeline_runner_role_grants_what_its_runtime_calls(group: str, resource: str, verb: str, name: str,
                                                                where: str) -> None:
    """Each call of KFP's runtime is one KFP's own pipeline-runner Role grants, at the release we follow."""
    assert rule_grants(upstream_role(KFP_VERSION)["rules"], group, resource, verb, name), where


@pytest.mark.parametrize(("group", "resource", "verb", "name", "where"), KFP_RUNTIME)
def test_the_pipeline_role_grants_what_kfps_runtime_calls(group: str, resource: str, verb: str, name: str,
                                                          where: str) -> None:
    """A run as the chart's ServiceAccount can do what KFP's launcher and Argo's executor do under pipeline-runner."""
    assert rule_grants(rendered_role()["rules"], group, resource, verb, name), where


def test_the_minimum_kfp_release_grants_the_launcher_the_same_reads() -> None:
    """KFP 2.5.0's pipeline-runner (before Argo 3.6 made workflowtaskresults required) already granted the reads."""
    rules = upstream_role(KFP_MINIMUM)["rules"]
    for group, resource, verb, name, where in KFP_RUNTIME:
        if group == "":
            assert rule_grants(rules, group, resource, verb, name), where


def test_artifact_secrets_are_the_only_secrets_and_configurable() -> None:
    """Secrets are readable by name only: KFP's artifact-store Secret(s), never the store Secret or any other."""
    rules = rendered_role()["rules"]
    assert not rule_grants(rules, "", "secrets", "get", "simplear-store")
    assert not rule_grants(rules, "", "secrets", "list", "")
    custom = rendered_role({"rbac": {"create": True, "kfpArtifactSecrets": ["s3-artifacts"]}})["rules"]
    assert rule_grants(custom, "", "secrets", "get", "s3-artifacts")
    assert not rule_grants(custom, "", "secrets", "get", "mlpipeline-minio-artifact")


def platform_calls(tmp_path: Path) -> list[Call]:
    """Every API call the launcher (GRPO runs with the rollout server as a sidecar and on the pool, one that fails, a
    cancel), the deploy step (an update) and `simplear deploy` (a create), the platform lookup and `simplear jobs
    --cluster` make, recorded by the simulated API server."""
    cluster = FakeCluster(scripts={"pretrain": PodScript(exit_code=1, lines=("boom",), reset_stream_after=0)})
    cluster.add("", "configmaps", {"metadata": {"name": "simplear-platform", "labels": {
        "app.kubernetes.io/part-of": "simplear", "app.kubernetes.io/component": "platform",
        "app.kubernetes.io/instance": "simplear"}}, "data": {
        "platform.json": one(objects("default"), "ConfigMap", "simplear-platform")["data"]["platform.json"]}})
    isvc = live_isvc()
    isvc["metadata"]["namespace"] = cluster.namespace
    cluster.add("serving.kserve.io", "inferenceservices", isvc)
    with cluster.serve() as server:
        launcher = launcher_for(server, tmp_path)
        find_platform(connect(kubeconfig=str(tmp_path / "kubeconfig")).core, cluster.namespace)
        for name, placement in (("grpo-1", "pool"), ("grpo-2", "sidecar")):
            grpo = launcher.run("grpo", StageSpec(name=name, rollout=RolloutSpec(model="s3://c/m",
                                                                                  placement=placement)))
            list(launcher.logs(grpo, follow=True))
            launcher.wait(grpo, 30)
        failing = launcher.run("pretrain", StageSpec(name="pretrain-1"))
        list(launcher.logs(failing, follow=True))
        with pytest.raises(StageFailed):
            launcher.wait(failing, 30)
        launcher.cancel(launcher.run("sft", StageSpec(name="sft-1")))
        launcher.deploy("simplear", "s3://simplear-checkpoints/x", timeout=30, labels={"pipeline/runid": "r"})
        cluster_args = ["jobs", "--cluster", "--kubeconfig", str(tmp_path / "kubeconfig"),
                        "--kfp-host", "http://127.0.0.1:1"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert simplear(["deploy", "--kubeconfig", str(tmp_path / "kubeconfig"), "--name", "shapes",
                             "--model", "s3://simplear-checkpoints/y", "--skip-store-check", "--timeout", "30"]) == 0
            for action in (["list"], ["describe", "grpo-1"], ["describe", "pod/grpo-1-master-0"],
                           ["describe", "isvc/simplear"], ["logs", "grpo-1"], ["logs", "isvc/simplear"],
                           ["cancel", "grpo-1"]):
                simplear([*cluster_args, *action])
    return cluster.calls


def test_every_api_call_the_platform_makes_is_granted_and_every_grant_is_used(tmp_path: Path) -> None:
    """Recorded calls x rendered Role: none refused; beyond KFP's runtime, no rule grants what nobody calls."""
    rules = rendered_role()["rules"]
    calls = platform_calls(tmp_path)
    refused = sorted({(c.group, c.resource, c.verb) for c in calls
                      if not rule_grants(rules, c.group, c.resource, c.verb, c.name)})
    assert refused == []
    used = {(c.group, c.resource, c.verb) for c in calls} | {(g, r, v) for g, r, v, _, _ in KFP_RUNTIME}
    granted = {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert granted - used == set()
    assert {("kubeflow.org", "pytorchjobs", "create"), ("apps", "deployments", "create"), ("", "pods/log", "get"),
            ("serving.kserve.io", "inferenceservices", "create"), ("serving.kserve.io", "inferenceservices", "update"),
            ("", "pods", "list"), ("", "configmaps", "list")} <= used


def test_no_wildcard_and_no_cluster_scope() -> None:
    """No wildcard anywhere, and the chart makes no cluster-wide RBAC in any value set."""
    for rule in rendered_role()["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
    for value_set in VALUE_SETS:
        docs = objects(value_set)
        assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")


def test_binding_gives_the_role_to_the_pipeline_account_in_the_release_namespace() -> None:
    """The RoleBinding ties the Role to simplear-pipeline, which mounts its token (it calls the API)."""
    docs = objects("default")
    binding = one(docs, "RoleBinding", "simplear-pipeline")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "simplear-pipeline"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "simplear-pipeline", "namespace": NAMESPACE}]
    assert one(docs, "ServiceAccount", "simplear-pipeline")["automountServiceAccountToken"] is True


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    """rbac.create=false renders no Role or RoleBinding but keeps the account."""
    docs = parse(render_values({"rbac": {"create": False, "kfpArtifactSecrets": ["mlpipeline-minio-artifact"]}}))
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    assert find(docs, "ServiceAccount", "simplear-pipeline")

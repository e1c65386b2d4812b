"""Pipeline runs get exactly the namespaced permissions they need, bound to their own ServiceAccount."""

from __future__ import annotations

from test_helm_render import NAMESPACE, VALUE_SETS, find, objects, one, parse, render_values

# (API group, resource) -> verbs: PyTorchJobs, the GRPO rollout server, the InferenceService, pods and logs.
NEEDED = {
    ("kubeflow.org", "pytorchjobs"): {"create", "get", "list", "watch", "delete"},
    ("apps", "deployments"): {"create", "get", "list", "watch", "delete"},
    ("", "services"): {"create", "get", "delete"},
    ("serving.kserve.io", "inferenceservices"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
}


def granted(role: dict) -> dict[tuple[str, str], set[str]]:
    """(API group, resource) -> verbs a Role grants."""
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_role_grants_exactly_what_pipeline_runs_need() -> None:
    """No resource or verb beyond the list; no wildcard anywhere."""
    role = one(objects("default"), "Role", "simplear-pipeline")
    assert granted(role) == NEEDED
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]


def test_no_secret_access_and_no_cluster_scope() -> None:
    """Pipelines never read Secrets through the API, and the chart makes no cluster-wide RBAC."""
    for value_set in VALUE_SETS:
        docs = objects(value_set)
        assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
        for role in find(docs, "Role"):
            assert all(resource != "secrets" for _, resource in granted(role))


def test_binding_gives_the_role_to_the_pipeline_account_in_the_release_namespace() -> None:
    """The RoleBinding ties the Role to simplear-pipeline, which mounts its token (it calls the API)."""
    docs = objects("default")
    binding = one(docs, "RoleBinding", "simplear-pipeline")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "simplear-pipeline"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "simplear-pipeline", "namespace": NAMESPACE}]
    assert one(docs, "ServiceAccount", "simplear-pipeline")["automountServiceAccountToken"] is True


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    """rbac.create=false renders no Role or RoleBinding but keeps the account."""
    docs = parse(render_values({"rbac": {"create": False}}))
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    assert find(docs, "ServiceAccount", "simplear-pipeline")

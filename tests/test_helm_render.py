"""Render the simplear chart for every supported value set: exactly its objects, in its namespace, labelled."""

from __future__ import annotations

import pytest
from helpers import NAMESPACE, RELEASE, VALUE_SETS, notes, objects, parse, render_values


def kinds_and_names(value_set: str) -> set[tuple[str, str]]:
    """(kind, name) of every object the value set renders."""
    return {(d["kind"], d["metadata"]["name"]) for d in objects(value_set)}


ALWAYS = {
    ("ServiceAccount", "simplear"),
    ("ServiceAccount", "simplear-pipeline"),
    ("Role", "simplear-pipeline"),
    ("RoleBinding", "simplear-pipeline"),
    ("ConfigMap", "simplear-platform"),
    ("ConfigMap", "simplear-scripts"),
    ("NetworkPolicy", "simplear-deny-ingress"),
    ("Pod", "simplear-test"),
}
MINIO = {
    ("Deployment", "simplear-minio"),
    ("PersistentVolumeClaim", "simplear-minio"),
    ("Service", "simplear-minio"),
    ("NetworkPolicy", "simplear-minio"),
}
SERVING = {("ServingRuntime", "simplear-runtime"), ("ServiceAccount", "simplear-serve")}
BUCKETS = {("Job", "simplear-buckets")}
STORE_SECRET = {("Secret", "simplear-store")}
KFP = {("ConfigMap", "simplear-pipelines"), ("Job", "simplear-register-pipelines")}

EXPECTED_OBJECTS = {
    "default": ALWAYS | MINIO | SERVING | BUCKETS | STORE_SECRET,
    "external-s3": ALWAYS | SERVING,
    "minio-existing-secret": ALWAYS | MINIO | SERVING | BUCKETS,
    "kserve-disabled": ALWAYS | MINIO | BUCKETS | STORE_SECRET,
    "custom-pools": ALWAYS | MINIO | SERVING | BUCKETS | STORE_SECRET,
    "kfp": ALWAYS | MINIO | SERVING | BUCKETS | STORE_SECRET | KFP,
    "serving-options": ALWAYS | MINIO | BUCKETS | STORE_SECRET | {
        ("ClusterServingRuntime", "simplear-gpu"), ("ServiceAccount", "simplear-serve"),
        ("PodDisruptionBudget", "simplear-serve")},
    "shared-gpu-cluster": ALWAYS | MINIO | SERVING | BUCKETS | STORE_SECRET,
}
CLUSTER_SCOPED = frozenset({"ClusterServingRuntime"})


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_value_set_renders_exactly_its_objects(value_set: str) -> None:
    """Each value set renders the objects it should and nothing else."""
    assert kinds_and_names(value_set) == EXPECTED_OBJECTS[value_set]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_lives_in_the_release_namespace(value_set: str) -> None:
    """Every namespaced object names the release namespace (none lands in `default` by accident)."""
    docs = objects(value_set)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in CLUSTER_SCOPED} == {NAMESPACE}
    assert all("namespace" not in d["metadata"] for d in docs if d["kind"] in CLUSTER_SCOPED)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_carries_the_standard_labels(value_set: str) -> None:
    """Recommended app.kubernetes.io labels and helm.sh/chart are on every object."""
    required = {
        "app.kubernetes.io/name": "simplear",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "simplear",
        "helm.sh/chart": "simplear-0.1.0",
    }
    for doc in objects(value_set):
        labels = doc["metadata"]["labels"]
        assert required.items() <= labels.items(), f"{doc['kind']}/{doc['metadata']['name']}: {labels}"
        assert labels["app.kubernetes.io/component"]


def test_common_labels_reach_every_object() -> None:
    """commonLabels from values are added to every object."""
    docs = parse(render_values({"commonLabels": {"team": "vision"}}))
    assert docs and all(d["metadata"]["labels"]["team"] == "vision" for d in docs)


def test_release_names_without_the_chart_name_prefix_resources() -> None:
    """A release not named after the chart prefixes every resource with <release>-simplear."""
    docs = parse(render_values({}, release="prod"))
    names = {d["metadata"]["name"] for d in docs}
    assert names and all(name.startswith("prod-simplear") for name in names)


def test_notes_explain_the_endpoint_the_pipelines_ui_and_the_jobs() -> None:
    """NOTES show the v1, v2 and OpenAI routes of the model, the Pipelines UI, both KFP installs, the run's service
    account and the kubectl lines that find a run's jobs by its id."""
    text = notes("default")
    for expected in (
        "/v1/models/simplear:predict",
        "/v2/models/simplear/infer",
        "/openai/v1/images/generations",
        "kubectl get inferenceservice simplear -n ml-platform",
        "svc/ml-pipeline-ui",
        "helm install simplear helm/simplear -n kubeflow --set kfp.enabled=true",
        "-n <profile> --set kfp.enabled=true --set kfp.namespace=<profile>",
        "This release is in ml-platform with no kfp.namespace",
        "service account simplear-pipeline",
        "kubectl get workflows,pytorchjobs,deployments,inferenceservices -n ml-platform -l pipeline/runid=<run id>",
        "simplear.io/stage=sft,training.kubeflow.org/job-role=master",
        "helm test simplear -n ml-platform",
    ):
        assert expected in text, expected


def test_notes_follow_the_values() -> None:
    """Without KServe the endpoint section is gone; a UI URL replaces the port-forward hint."""
    assert ":predict" not in notes("kserve-disabled")
    kfp_notes = notes("kfp")
    assert "https://kubeflow.example.com/pipelines" in kfp_notes
    assert "svc/ml-pipeline-ui" not in kfp_notes


def test_notes_tell_how_to_annotate_an_existing_secret_for_kserve() -> None:
    """With an existing Secret, NOTES print the kubectl annotate command carrying KServe's S3 settings."""
    text = notes("external-s3")
    assert "kubectl annotate secret aws-s3-credentials -n ml-platform" in text
    assert "serving.kserve.io/s3-endpoint=s3.eu-west-1.amazonaws.com" in text
    assert "serving.kserve.io/s3-usehttps=1" in text
    assert "kubectl annotate" not in notes("default")

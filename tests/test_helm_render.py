"""Render the simplear chart for every supported value set; also the helpers the other chart tests share."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART = Path(__file__).resolve().parents[1] / "helm" / "simplear"
# The kinds a cluster with KServe serves, which the chart checks with .Capabilities.APIVersions.
KSERVE_APIS = ("serving.kserve.io/v1alpha1/ServingRuntime", "serving.kserve.io/v1alpha1/ClusterServingRuntime",
               "serving.kserve.io/v1beta1/InferenceService")
RELEASE = "simplear"
NAMESPACE = "ml-platform"

CUSTOM_POOLS: dict[str, Any] = {
    "tokenize": {
        "nodeSelector": {"pool": "tokenize-l4"},
        "tolerations": [{"key": "pool", "operator": "Equal", "value": "tokenize", "effect": "NoSchedule"}],
        "affinity": {},
        "gpuResource": "nvidia.com/gpu",
        "gpus": 1,
        "cpu": "6",
        "memory": "48Gi",
    },
    "train": {
        "nodeSelector": {"pool": "train-h100"},
        "tolerations": [{"key": "pool", "operator": "Equal", "value": "train", "effect": "NoSchedule"}],
        "affinity": {},
        "gpuResource": "nvidia.com/gpu",
        "gpus": 8,
        "cpu": "96",
        "memory": "1Ti",
    },
    "rollout": {
        "nodeSelector": {"pool": "rollout-h100"},
        "tolerations": [{"key": "pool", "operator": "Equal", "value": "rollout", "effect": "NoSchedule"}],
        "affinity": {},
        "gpuResource": "nvidia.com/gpu",
        "gpus": 2,
        "cpu": "16",
        "memory": "128Gi",
    },
    "serve": {
        "nodeSelector": {"pool": "serve-mi300"},
        "tolerations": [
            {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "pool", "operator": "Equal", "value": "serve", "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gpu.family", "operator": "In", "values": ["mi300x"]}]}
                    ]
                }
            }
        },
        "gpuResource": "amd.com/gpu",
        "gpus": 2,
        "cpu": 12,
        "memory": "96Gi",
    },
    "cpu": {
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "pool", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/part-of": "simplear"}},
                        },
                    }
                ]
            }
        },
        "gpuResource": "nvidia.com/gpu",
        "gpus": 0,
        "cpu": "1",
        "memory": "2Gi",
    },
}

# Every supported way to install the chart: name -> values given to `helm install`.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "external-s3": {
        "minio": {"enabled": False},
        "store": {
            "endpoint": "s3.eu-west-1.amazonaws.com",
            "secure": True,
            "region": "eu-west-1",
            "existingSecret": "aws-s3-credentials",
            "dataBucket": "acme-simplear-data",
            "checkpointBucket": "acme-simplear-checkpoints",
            "createBuckets": False,
        },
    },
    "minio-existing-secret": {"store": {"existingSecret": "team-minio-root"}},
    "kserve-disabled": {"kserve": {"enabled": False}},
    "custom-pools": {"pools": CUSTOM_POOLS, "images": {"pullSecrets": ["registry-credentials"]}},
    "kfp": {
        "kfp": {
            "enabled": True,
            "endpoint": "http://ml-pipeline.kubeflow:8888",
            "uiUrl": "https://kubeflow.example.com/pipelines",
            "namespace": "team-vision",
        }
    },
    "serving-options": {
        "kserve": {
            "inferenceServiceName": "shapes",
            "runtime": {"name": "simplear-gpu", "cluster": True},
            "minReplicas": 2,
            "maxReplicas": 6,
            "autoscaling": {"scaleMetric": "concurrency", "scaleTarget": 4},
            "deploymentStrategy": "RollingUpdate",
            "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
            "prometheusScrape": False,
            "testModel": True,
        }
    },
    "shared-gpu-cluster": {
        "rollout": {"placement": "pool"},
        "scheduling": {
            "kueueQueue": "team-vision",
            "gang": {"scheduler": "volcano", "schedulerName": "", "queue": "gpu-research",
                     "scheduleTimeoutSeconds": 900},
            "priorityClassName": "training-high",
        },
    },
}

_WORKDIR = tempfile.TemporaryDirectory(prefix="simplear-chart-")


@cache
def chart_without_pipelines() -> Path:
    """A copy of the chart whose files/pipelines/ holds no compiled pipeline."""
    copy_dir = Path(tempfile.mkdtemp(dir=_WORKDIR.name)) / "simplear"
    shutil.copytree(CHART, copy_dir)
    for compiled in (copy_dir / "files" / "pipelines").glob("*.yaml"):
        compiled.unlink()
    return copy_dir


def render_values(values: dict[str, Any], chart: Path = CHART, api_versions: tuple[str, ...] = KSERVE_APIS,
                  release: str = RELEASE) -> dict[str, str]:
    """Render chart with values as `helm install --api-versions ...` would on a cluster serving `api_versions` (by
    default one with KServe's CRDs): template path -> rendered text. helm-python-sdk's Chart.render has no parameter
    for them, so this passes Helm's own render option `api_versions` to the engine it wraps."""
    from helm_python import _native

    with helm.Chart.load(chart) as loaded:
        options = {"name": release, "namespace": NAMESPACE, "is_install": True, "api_versions": list(api_versions)}
        return json.loads(_native.call_string("helm_render", loaded._raw(), json.dumps(values), json.dumps(options)))


@cache
def _rendered(value_set: str) -> dict[str, str]:
    """Rendered templates of one value set, computed once per session."""
    return render_values(VALUE_SETS[value_set])


def rendered(value_set: str) -> dict[str, str]:
    """Rendered templates of one value set (a fresh copy, safe to modify)."""
    return dict(_rendered(value_set))


def parse(texts: dict[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects in rendered templates (NOTES.txt and empty documents left out)."""
    docs = []
    for path, text in texts.items():
        if path.endswith(".yaml"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


@cache
def _objects(value_set: str) -> tuple[dict[str, Any], ...]:
    """Kubernetes objects of one value set, parsed once per session."""
    return tuple(parse(_rendered(value_set)))


def objects(value_set: str) -> list[dict[str, Any]]:
    """Every Kubernetes object the value set renders, hooks and tests included (deep copies)."""
    return copy.deepcopy(list(_objects(value_set)))


def notes(value_set: str) -> str:
    """The NOTES.txt `helm install` prints for the value set."""
    return _rendered(value_set)[f"{CHART.name}/templates/NOTES.txt"]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of one kind, optionally with one name."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of a kind (and name); fails when there is not exactly one."""
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload: Deployments, Jobs, Pods and InferenceService predictors."""
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield where, doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield where, doc["spec"]
        elif doc["kind"] in ("ServingRuntime", "ClusterServingRuntime"):
            yield where, serving_pod(doc, docs)


# InferenceService predictor fields that shape the deployment, not the pod.
PREDICTOR_EXTENSION = frozenset({"minReplicas", "maxReplicas", "scaleMetric", "scaleMetricType", "scaleTarget",
                                 "timeout", "labels", "annotations", "model", "deploymentStrategy", "autoScaling",
                                 "containerConcurrency", "canaryTrafficPercent", "logger", "batcher", "workerSpec"})
RUNTIME_ONLY = frozenset({"annotations", "labels", "supportedModelFormats", "protocolVersions", "multiModel",
                          "disabled", "builtInAdapter", "storageHelper", "grpcEndpoint", "grpcDataEndpoint",
                          "httpDataEndpoint", "replicas", "workerSpec"})


def kserve_pod(runtime: dict[str, Any], isvc: dict[str, Any]) -> dict[str, Any]:
    """The predictor pod spec KServe makes of a ServingRuntime and an InferenceService that names it: the runtime's
    pod fields and containers, the predictor's pod fields on top, the InferenceService's name for {{.Name}} (kserve
    pkg/controller/v1beta1/inferenceservice/components/predictor.go: MergePodSpec, MergeRuntimeContainers,
    ReplacePlaceholders)."""
    predictor = isvc["spec"]["predictor"]
    pod = {key: value for key, value in runtime["spec"].items() if key not in RUNTIME_ONLY}
    pod.update({key: value for key, value in predictor.items() if key not in PREDICTOR_EXTENSION})
    text = json.dumps(pod).replace("{{.Name}}", isvc["metadata"]["name"])
    return json.loads(text)


def serving_pod(runtime: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod of a model deployed with the chart's runtime: the InferenceService the platform builds from the chart's
    platform ConfigMap (what the pipelines' deploy step and `simplear deploy` create), merged as KServe does."""
    from simplear.platform.config import PlatformConfig
    from simplear.platform.manifests.serving import inference_service

    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-platform")]
    platform = PlatformConfig.model_validate_json(configmap["data"]["platform.json"])
    return kserve_pod(runtime, inference_service(platform, platform.inference_service, "s3://ckpt/model"))


def pod_labels(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """kind/name -> labels its pods carry."""
    labels = {}
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "Job"):
            labels[where] = doc["spec"]["template"]["metadata"]["labels"]
        elif doc["kind"] == "Pod":
            labels[where] = doc["metadata"]["labels"]
    return labels


def kinds_and_names(value_set: str) -> set[tuple[str, str]]:
    """(kind, name) of every object the value set renders."""
    return {(d["kind"], d["metadata"]["name"]) for d in _objects(value_set)}


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

"""Helpers the tests share (no tests here): the rendered chart, schema checks, platform objects and API answers,
tiny models and stand-ins, transformers oracles and server clients."""

from __future__ import annotations

import argparse
import base64
import copy
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import numpy as np
import requests
import torch
import yaml
from kube_api_sim import FakeCluster, PodScript
from kubernetes.client import ApiClient as KubernetesApiClient
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast, RepetitionPenaltyLogitsProcessor

from simplear.config import ModelShape, SamplingConfig
from simplear.model.prompt import negative_prompt, t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.platform.cluster_clients import connect
from simplear.platform.config import PlatformConfig
from simplear.platform.kubernetes_launcher import KubernetesLauncher
from simplear.platform.manifests import (
    inference_service,
    pytorch_job,
    rollout_deployment,
    rollout_service,
    serve_service_account,
    serving_runtime,
)
from simplear.platform.stage_spec import RolloutSpec, StageSpec
from simplear.platform.stages import STAGES
from simplear.sampling.batch import Request, SamplingModes
from simplear.sampling.distribution import guided_logprobs, target_probs
from simplear.train.rollout.client import HttpRolloutClient

ROOT = Path(__file__).resolve().parents[1]
HTTP_TIMEOUT_S = 120

# --- the chart, rendered as `helm install` renders it --------------------------------------------

CHART = ROOT / "helm" / "simplear"
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


# --- schema validation: core kinds against the API schemas, custom kinds against their CRDs ------------

# The chart's kubeVersion floor (Chart.yaml) and the newest API schemas kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
# The CRDs of the cluster add-ons the platform targets (Kubeflow Training Operator, KServe).
CRD_DIR = ROOT / "tests" / "crds"
CRD_FILES = {
    ("kubeflow.org/v1", "PyTorchJob"): "kubeflow.org_pytorchjobs.yaml",
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "serving.kserve.io_servingruntimes.yaml",
    # KServe's ClusterServingRuntime is the same ServingRuntimeSpec, cluster-scoped (pkg/apis/serving/v1alpha1).
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "serving.kserve.io_servingruntimes.yaml",
}


def forbid_unknown_fields(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the API server would prune them (kubectl --validate=strict)."""
    if isinstance(schema, list):
        return [forbid_unknown_fields(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: forbid_unknown_fields(value) for key, value in schema.items()}
    open_object = "properties" in schema and "additionalProperties" not in schema
    if open_object and not schema.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    """Validator of one custom kind from its CRD's openAPIV3Schema, for the served version."""
    crd = yaml.load((CRD_DIR / CRD_FILES[(api_version, kind)]).read_text(), Loader=yaml.CSafeLoader)
    version = api_version.split("/")[1]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return jsonschema.Draft7Validator(forbid_unknown_fields(served["schema"]["openAPIV3Schema"]))


def validation_errors(doc: dict[str, Any], kubernetes_version: str = KUBERNETES_VERSIONS[-1]) -> list[str]:
    """Why doc is not a valid object of its kind (core kinds: in that Kubernetes version); empty when it is."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_FILES:
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(*key).iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(map(str, error.path))}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [error.message]
    return []


# --- platform configs, objects and the API server's answers ------------------------------------

@cache
def chart_platform_config(value_set: str) -> PlatformConfig:
    """The PlatformConfig the chart renders into its platform ConfigMap for a value set."""
    configmap = one(objects(value_set), "ConfigMap", "simplear-platform")
    return PlatformConfig.model_validate_json(configmap["data"]["platform.json"])


def pod_specs_of(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod metadata, pod spec) of every pod template an object holds (an InferenceService's pod is its
    runtime's merged with it: kserve_pod)."""
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


# The value sets whose platform configs the manifest tests build every object of.
CONFIGS = ("default", "custom-pools")
# A GRPO stage with its rollout server as the master's sidecar, and the same with the server on the rollout pool.
GRPO = StageSpec(name="grpo-1", args=("--prompts", "s3://d/p.jsonl", "--output", "s3://c/grpo", "--init-from",
                                      "s3://c/sft/final", "--max-steps", "5"),
                 rollout=RolloutSpec(model="s3://c/sft/final"))
GRPO_POOL = GRPO.model_copy(update={"name": "grpo-2", "rollout": RolloutSpec(model="s3://c/sft/final",
                                                                              placement="pool")})

def stage_objects(platform: PlatformConfig) -> list[dict[str, Any]]:
    """One PyTorchJob per stage (two nodes where a stage runs ranks; GRPO with its rollout server as a sidecar and
    on the rollout pool), the rollout objects and the serving objects."""
    jobs = [pytorch_job(platform, stage, StageSpec(name=f"{stage}-1", args=("--x", "1"),
                                                  nodes=2 if kind.distributed else 1))
            for stage, kind in STAGES.items() if stage != "grpo"]
    return [*jobs, pytorch_job(platform, "grpo", GRPO.model_copy(update={"nodes": 2})),
            pytorch_job(platform, "grpo", GRPO_POOL), rollout_deployment(platform, GRPO_POOL, owner_uid="0a1b-uid"),
            rollout_service(GRPO_POOL, owner_uid="0a1b-uid"), serve_service_account(platform, "simplear-serve"),
            serving_runtime(platform), inference_service(platform, "simplear", "s3://c/m")]


def answered_job(conditions: list[dict[str, Any]], **status: Any) -> Any:
    """A PyTorchJob as the API server returns it, with these conditions, parsed by the training client."""
    body = pytorch_job(chart_platform_config("default"), "pretrain", StageSpec(name="pretrain-1", nodes=2))
    body["metadata"].update(uid="8c1e", creationTimestamp="2026-03-01T10:00:00Z", namespace="ml")
    body["status"] = {"conditions": conditions, "startTime": "2026-03-01T10:00:05Z", **status}
    return pytorchjob_object(body)


def condition(kind: str, status: str = "True", message: str = "", at: str = "2026-03-01T10:01:00Z") -> dict:
    """One job condition as the training operator writes it."""
    return {"type": kind, "status": status, "reason": f"PyTorchJob{kind}", "message": message,
            "lastTransitionTime": at, "lastUpdateTime": at}


def pod(name: str, role: str, state: dict[str, Any], last_state: dict[str, Any] | None = None,
        phase: str = "Running") -> dict[str, Any]:
    """A training pod as the API server lists it."""
    return {
        "metadata": {"name": name, "namespace": "ml", "creationTimestamp": "2026-03-01T10:00:00Z",
                     "labels": {"training.kubeflow.org/job-name": "pretrain-1",
                                "training.kubeflow.org/replica-type": role}},
        "spec": {"containers": [{"name": "pytorch", "image": "train:0.1.0"}]},
        "status": {"phase": phase, "containerStatuses": [{
            "name": "pytorch", "image": "train:0.1.0", "imageID": "", "ready": False, "restartCount": 1,
            "state": state, "lastState": last_state or {}}]},
    }


def terminated(code: int, at: str, reason: str = "Error") -> dict[str, Any]:
    """A container state: exited with code at a time."""
    return {"terminated": {"exitCode": code, "reason": reason, "finishedAt": at, "startedAt": "2026-03-01T10:00:10Z"}}


def pod_list(*pods: dict[str, Any]) -> list[Any]:
    """The pods parsed as CoreV1Api.list_namespaced_pod parses them."""
    return kubernetes_object({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": list(pods)},
                             "V1PodList").items


def live_isvc() -> dict[str, Any]:
    """The InferenceService a deploy of the chart's default platform creates, as the API server returns it: with
    resourceVersion, generation and status."""
    isvc = inference_service(chart_platform_config("default"), "simplear",
                             "s3://simplear-checkpoints/models/simplear/v3", namespace="ml-platform")
    isvc["metadata"].update(resourceVersion="991", generation=4)
    isvc["status"] = {"url": "http://simplear.ml-platform.example.com", "observedGeneration": 4, "conditions": [
        {"type": "PredictorReady", "status": "True"}, {"type": "Ready", "status": "True"}]}
    return isvc


POLL_S = 0.1


def launcher_for(server: object, tmp_path: Path, notes: list[str] | None = None) -> KubernetesLauncher:
    """A KubernetesLauncher on the simulated cluster, polling fast."""
    clients = connect(kubeconfig=str(server.kubeconfig(tmp_path / "kubeconfig")))
    return KubernetesLauncher(chart_platform_config("default"), clients, poll_s=POLL_S,
                              note=notes.append if notes is not None else None)


STEP = """
import sys
sys.path.insert(0, {root!r})
from pipelines.components.stage_support import run_stage
run_stage("kubernetes", "", "grpo", "grpo", ["--max-steps", 5], 0, 60, "run-42",
          {{"model": "s3://simplear-checkpoints/sft/final", "engine": "vllm", "placement": "pool"}})
"""


def run_step_until_sigterm(python: Path, cluster: FakeCluster, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a GRPO pipeline step (stage_support.run_stage, backend kubernetes) with `python` against the simulated
    cluster; SIGTERM it once its master container runs, as the kubelet does when KFP cancels the run."""
    with cluster.serve() as server:
        config = tmp_path / "platform.json"
        config.write_text(chart_platform_config("default").model_dump_json(by_alias=True))
        env = {**os.environ, "KUBECONFIG": str(server.kubeconfig(tmp_path / "kubeconfig")),
               "SIMPLEAR_PLATFORM_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        step = subprocess.Popen([str(python), "-c", STEP.format(root=str(ROOT))], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while not any(name.startswith("grpo-") for name in cluster.created) or time.monotonic() < min(
                cluster.created.values(), default=deadline) + PodScript().started_after() + 0.3:
            assert step.poll() is None, step.communicate()[0]
            assert time.monotonic() < deadline, "the step never created its job"
            time.sleep(0.1)
        step.send_signal(signal.SIGTERM)
        output, _ = step.communicate(timeout=60)
    return subprocess.CompletedProcess(step.args, step.returncode, output)


# --- tiny models and stand-ins for the checkpoints a run reads ----------------------------------

SHAPE = ModelShape(
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    rope_theta=10_000.0,
    max_position_embeddings=1024,
)
"""Two Qwen2 layers 64 wide: the model the training and GRPO tests train in seconds."""

CLIP_WORDS = (
    "a", "photo", "of", "red", "blue", "green", "circle", "square", "cross", "triangle", "two", "three", "and",
)
CLIP_MEAN, CLIP_STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
PROJECTION = 16
LAION_LAYERS = (0, 2, 4, 6, 7)
"""Indices of the Linear layers in LAION's aesthetic MLP (dropouts sit at 1, 3 and 5)."""


def write_tiny_clip(path: Path) -> Path:
    """A random CLIPModel (32 px, 16-d projection), a word-level tokenizer and a preprocessor config, saved to path."""
    specials = ["[UNK]", "<|startoftext|>", "<|endoftext|>"]
    vocab = {word: i for i, word in enumerate([*CLIP_WORDS, *specials])}
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", unk_token="[UNK]",
    )
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 16, "bos_token_id": bos,
                     "eos_token_id": eos, "pad_token_id": eos},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 48,
                       "num_hidden_layers": 2, "num_attention_heads": 4},
        projection_dim=PROJECTION,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({
        "size": {"shortest_edge": 36}, "crop_size": {"height": 32, "width": 32},
        "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
    }))
    return path


def aesthetic_state(width: int = PROJECTION, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LAION-format MLP state dict: Linear layers at indices 0, 2, 4, 6, 7, narrowing `width` down to one score."""
    generator = torch.Generator().manual_seed(seed)
    sizes = (width, 12, 8, 6, 4, 1)
    state = {}
    for index, (n_in, n_out) in zip(LAION_LAYERS, itertools.pairwise(sizes), strict=True):
        state[f"layers.{index}.weight"] = torch.randn(n_out, n_in, generator=generator) / n_in**0.5
        state[f"layers.{index}.bias"] = torch.randn(n_out, generator=generator)
    return state


def write_aesthetic_head(path: Path, width: int = PROJECTION) -> Path:
    """The LAION-format MLP saved as safetensors at path."""
    save_file(aesthetic_state(width), str(path))
    return path


class FakeCosmosEncoder(torch.nn.Module):
    """Same call signature as Cosmos' encoder.jit: [B, 3, 1, H, W] -> (indices [B, 1, H/16, W/16], codes)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.nn.functional.avg_pool2d(x[:, :, 0].float(), 16)
        levels = ((pooled.clamp(-1, 1) + 1) * 19.5).round().long()
        indices = levels[:, 0] * 1600 + levels[:, 1] * 40 + levels[:, 2]
        return indices[:, None], pooled[:, :, None].repeat(1, 2, 1, 1, 1)


class FakeCosmosDecoder(torch.nn.Module):
    """Same call signature as Cosmos' decoder.jit: indices [B, 1, h, w] -> video [B, 3, 1, 16h, 16w]."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        idx = indices[:, 0]
        levels = torch.stack([idx // 1600, (idx // 40) % 40, idx % 40], dim=1).to(self.scale.dtype)
        pixels = levels / 19.5 - 1
        return pixels.repeat_interleave(16, dim=2).repeat_interleave(16, dim=3)[:, :, None] * self.scale



def write_fake_cosmos(path: Path) -> Path:
    """A directory holding scripted stand-ins for Cosmos' encoder.jit and decoder.jit (64,000 codes, 16 px each)."""
    path.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(FakeCosmosEncoder()), path / "encoder.jit")
    torch.jit.save(torch.jit.script(FakeCosmosDecoder()), path / "decoder.jit")
    return path


# --- oracles: the distributions transformers' own forward passes give ----------------------------

def transformers_penalized_guided(model: SimpleARModel, request: Request, codes: torch.Tensor) -> torch.Tensor:
    """Code log-probabilities [N, codes] of the distribution transformers' `generate` samples under upstream's CFG.

    RepetitionPenaltyLogitsProcessor acts on the conditional row's full-vocabulary logits over every token before
    the step (prompt and codes), then CFG on log-softmaxes (wdrink/SimpleAR simpar/model/language_model/
    simpar_qwen2.py, CFGLogits, restricted here to the code range the sampler draws from).
    """
    penalty = RepetitionPenaltyLogitsProcessor(request.params.repetition_penalty)
    cond, uncond = model.encode_prompts([t2i_prompt(request.prompt, request.prefix),
                                         negative_prompt(request.params.negative_prompt)])
    ids = model.vocab.to_ids(codes)
    rows = []
    for prompt, penalised in ((cond, True), (uncond, False)):
        sequence = torch.cat([torch.tensor(prompt), ids[:-1]])
        with torch.no_grad():
            logits = model.lm(sequence[None]).logits[0, len(prompt) - 1 :]
        if penalised:
            logits = torch.stack([penalty(sequence[None, : len(prompt) + t], logits[t][None])[0]
                                  for t in range(len(codes))])
        rows.append(logits[:, model.vocab.offset : model.vocab.end])
    return guided_logprobs(torch.stack(rows), torch.tensor([request.params.cfg_scale]), True)[0].log_softmax(-1)


def hf_guided_logprobs(model: SimpleARModel, request: Request, codes: torch.Tensor) -> torch.Tensor:
    """Guided code log-probabilities [N, codes] at every step of `codes`, from plain transformers forwards.

    Teacher-forces the conditional and the unconditional prompt followed by `codes` through `model.lm` and mixes
    them as the original CFG does; the oracle for any engine's next-token distribution.
    """
    vocab = model.vocab
    texts = [t2i_prompt(request.prompt, request.prefix), negative_prompt(request.params.negative_prompt)]
    rows = []
    for ids in model.encode_prompts(texts):
        sequence = torch.cat([torch.tensor(ids), codes[:-1] + vocab.offset])
        with torch.no_grad():
            logits = model.lm(sequence[None]).logits[0, len(ids) - 1 :, vocab.offset : vocab.end]
        rows.append(logits)
    scale = torch.tensor([request.params.cfg_scale])
    return guided_logprobs(torch.stack(rows), scale, with_uncond=True)[0]


def sampled_logprobs(guided: torch.Tensor, codes: torch.Tensor, params: SamplingConfig) -> torch.Tensor:
    """Log-probability of each code under the temperature / top-k / top-p distribution it was drawn from."""
    n = guided.shape[0]
    modes = SamplingModes(scaled=params.temperature != 1.0, filtered=params.top_k > 0 or params.top_p < 1.0,
                          greedy=params.temperature == 0.0)
    probs = target_probs(guided, torch.full((n,), params.temperature), torch.full((n,), params.top_k),
                         torch.full((n,), params.top_p), modes)
    return (probs.gather(1, codes[:, None]).squeeze(1) / probs.sum(dim=-1)).log()


# --- clients of the servers under test -----------------------------------------------------------

def predict(url: str, instances: list[dict]) -> requests.Response:
    """POST a v1 predict request."""
    return requests.post(f"{url}/v1/models/simplear:predict", json={"instances": instances}, timeout=HTTP_TIMEOUT_S)


def pixels(image_b64: str) -> np.ndarray:
    """RGB pixels of a base64 PNG."""
    with Image.open(io.BytesIO(base64.b64decode(image_b64))) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def post(url: str, path: str, body: dict) -> requests.Response:
    """POST a JSON body."""
    return requests.post(f"{url}{path}", json=body, timeout=HTTP_TIMEOUT_S)


def serve(url: str, checkpoint: Path) -> int:
    """Make the server sample from a saved checkpoint; its new policy version."""
    response = post(url, "/weights", {"uri": str(checkpoint)})
    assert response.status_code == 200, response.text
    return response.json()["policy_version"]


def assert_push_serves_trained_policy(client: HttpRolloutClient, trained_dir: Path, num_codes: int) -> int:
    """Push trained_dir's weights; greedy codes become transformers' argmax on them, sampled logprobs match; version."""
    greedy = [Request(prompt, SamplingConfig(cfg_scale=scale, temperature=0.0))
              for prompt in ("a red circle", "a cat") for scale in (1.0, 5.0)]
    before = client.generate(greedy, num_codes)
    trained = SimpleARModel.load(trained_dir)
    version = client.push_weights(trained)
    after = client.generate(greedy, num_codes)
    assert version == before.policy_version + 1 == after.policy_version
    assert not torch.equal(before.codes, after.codes)
    for request, codes in zip(greedy, after.codes, strict=True):
        assert torch.equal(hf_guided_logprobs(trained, request, codes).argmax(dim=-1), codes)
    assert torch.equal(after.logprobs, torch.zeros_like(after.logprobs)), "a greedy pick has probability one"
    params = SamplingConfig(cfg_scale=3.0, temperature=0.9, top_k=6, seed=11)
    sampled = client.generate([Request("a green cross", params)], 24)
    expected = sampled_logprobs(hf_guided_logprobs(trained, Request("a green cross", params), sampled.codes[0]),
                                sampled.codes[0], params)
    assert torch.allclose(sampled.logprobs[0], expected, atol=1e-4)
    return version


# --- command lines ---------------------------------------------------------------------------------

def parser_options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of a parser (`-h` and `--help` included), in the order they were added."""
    return [option for action in parser._actions for option in action.option_strings]


# --- the package as it ships ------------------------------------------------------------------------

def build_wheel(work: Path) -> Path:
    """The wheel of this checkout, built from a copy of its sources (so no build/ or egg-info lands in the checkout)
    with this environment's setuptools (no build isolation: nothing is downloaded)."""
    source = work / "source"
    shutil.copytree(ROOT / "simplear", source / "simplear", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(work / "wheels"), str(source)], check=True, timeout=300)
    (wheel,) = (work / "wheels").glob("simplear-*.whl")
    return wheel

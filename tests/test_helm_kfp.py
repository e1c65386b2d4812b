"""Pipeline registration: the compiled pipelines ship in a ConfigMap and a hook Job registers them."""

from __future__ import annotations

import yaml
from helpers import CHART, objects, one

TOKEN_DIR = "/var/run/secrets/kubeflow/pipelines"


def registration_job() -> dict:
    """The registration Job of the KFP value set."""
    return one(objects("kfp"), "Job", "simplear-register-pipelines")


def test_compiled_pipelines_ship_verbatim_in_a_config_map() -> None:
    """Every files/pipelines/*.yaml of the chart is a key of the pipelines ConfigMap, content unchanged."""
    compiled = sorted((CHART / "files" / "pipelines").glob("*.yaml"))
    config_map = one(objects("kfp"), "ConfigMap", "simplear-pipelines")
    assert config_map["data"] == {path.name: path.read_text() for path in compiled}
    names = {next(yaml.safe_load_all(path.read_text()))["pipelineInfo"]["name"] for path in compiled}
    assert names == {"simplear-lifecycle", "simplear-train", "simplear-tokenize", "simplear-pretrain", "simplear-sft",
                     "simplear-grpo", "simplear-evaluate-deploy"}


def test_the_pipelines_config_map_fits_the_api_servers_limit() -> None:
    """The API server refuses a ConfigMap whose values total more than 1 MiB (kubernetes pkg/apis/core/validation/
    validation.go, ValidateConfigMap: `totalSize > core.MaxSecretSize`); the compiled pipelines leave a fifth free."""
    config_map = one(objects("kfp"), "ConfigMap", "simplear-pipelines")
    size = sum(len(value.encode()) for value in config_map["data"].values())
    assert size < 0.8 * 1024 * 1024, f"{size} bytes"


def test_registration_runs_after_install_and_upgrade_once_buckets_exist() -> None:
    """A post-install/post-upgrade hook, weighted after the bucket Job, replaced on the next upgrade."""
    annotations = registration_job()["metadata"]["annotations"]
    buckets = one(objects("kfp"), "Job", "simplear-buckets")["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert int(annotations["helm.sh/hook-weight"]) > int(buckets["helm.sh/hook-weight"])
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]


def test_registration_targets_the_configured_api_and_namespace() -> None:
    """The script gets the endpoint, the owning namespace and the chart version (for version names)."""
    spec = registration_job()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert container["command"] == ["python", "/scripts/register_pipelines.py", "/pipelines"]
    assert env["KFP_ENDPOINT"] == "http://ml-pipeline.kubeflow:8888"
    assert env["KFP_NAMESPACE"] == "team-vision"
    assert env["CHART_VERSION"] == "0.1.0"
    assert container["image"] == "ghcr.io/simplear/simplear-base:0.1.0"


def test_registration_authenticates_with_a_pipelines_audience_token_only() -> None:
    """No Kubernetes API token; a projected token for audience pipelines.kubeflow.org where kfp looks for it."""
    spec = registration_job()["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    (source,) = volumes[mounts[TOKEN_DIR]]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    assert source["serviceAccountToken"]["path"] == "token"
    assert volumes[mounts["/pipelines"]]["configMap"]["name"] == "simplear-pipelines"
    assert volumes[mounts["/scripts"]]["configMap"]["name"] == "simplear-scripts"

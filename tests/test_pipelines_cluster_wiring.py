"""What every component pod gets on the cluster, read from the compiled YAML the chart registers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from test_helm_render import NAMESPACE, objects, one

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # pipelines/ is a folder of the repository, not an installed package

from pipelines.compile import COMPILED, PIPELINES  # noqa: E402
from pipelines.submit import pipeline_service_account, submit  # noqa: E402


def documents(name: str) -> tuple[dict, dict]:
    """(pipeline spec, kubernetes platform spec of every executor) of one compiled pipeline."""
    spec, platform = yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def every_executor() -> list[tuple[str, dict, dict]]:
    """(pipeline/executor, container, kubernetes config) of every executor of every pipeline."""
    found = []
    for name in PIPELINES:
        spec, kubernetes = documents(name)
        for executor, body in spec["deploymentSpec"]["executors"].items():
            found.append((f"{name}/{executor}", body["container"], kubernetes[executor]))
    return found


def test_every_component_pod_gets_the_store_credentials_as_env_from_the_secret() -> None:
    """AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the Secret the store_secret parameter names."""
    for where, _, kubernetes in every_executor():
        (secret,) = kubernetes["secretAsEnv"]
        assert secret["secretNameParameter"] == {"componentInputParameter": "store_secret"}, where
        assert {(e["secretKey"], e["envVar"]) for e in secret["keyToEnv"]} == {
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")}, where


def test_every_component_pod_mounts_the_platform_config_map_where_components_read_it() -> None:
    """The ConfigMap named by platform_config_map at /etc/simplear; SIMPLEAR_PLATFORM_CONFIG names its platform.json."""
    for where, container, kubernetes in every_executor():
        (volume,) = kubernetes["configMapAsVolume"]
        assert volume["configMapNameParameter"] == {"componentInputParameter": "platform_config_map"}, where
        assert volume["mountPath"] == "/etc/simplear", where
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["SIMPLEAR_PLATFORM_CONFIG"] == "/etc/simplear/platform.json", where


def test_the_mounted_config_map_holds_what_the_components_read() -> None:
    """The chart's platform ConfigMap has the platform.json key the mount turns into that file."""
    config_map = one(objects("default"), "ConfigMap", "simplear-platform")
    assert set(config_map["data"]) == {"platform.json"}
    assert json.loads(config_map["data"]["platform.json"])["storeEndpoint"]


def test_every_component_pod_runs_on_the_cpu_pool_as_a_store_client() -> None:
    """nodeSelector and tolerations from the cpu pool parameters, the MinIO client label, the cpu pool's size."""
    for where, container, kubernetes in every_executor():
        assert kubernetes["nodeSelector"] == {"nodeSelectorJson": {"componentInputParameter": "cpu_node_selector"}}
        assert kubernetes["tolerations"] == [{"tolerationJson": {"componentInputParameter": "cpu_tolerations"}}]
        assert kubernetes["podMetadata"]["labels"] == {"simplear.io/store-client": "true"}, where
        assert kubernetes["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001", "runAsNonRoot": True}
        resources = container["resources"]
        assert (resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == ("2", "8Gi"), where


def test_minio_admits_the_label_the_component_pods_carry() -> None:
    """The MinIO NetworkPolicy lets in pods labelled simplear.io/store-client=true, as every component pod is."""
    policy = one(objects("default"), "NetworkPolicy", "simplear-minio")
    selectors = [peer.get("podSelector", {}).get("matchLabels") for rule in policy["spec"]["ingress"]
                 for peer in rule.get("from", [])]
    assert {"simplear.io/store-client": "true"} in selectors


class RecordingClient:
    """Stands in for the Kubeflow Pipelines API (there is none here): records the run it is asked to create."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_run_from_pipeline_package(self, package: str, **options: object) -> object:
        """Record the call; answer with a run id."""
        self.calls.append((package, options))
        return type("Run", (), {"run_id": "run-1"})()


def test_runs_are_created_as_the_service_account_the_chart_binds_to_the_pipeline_role() -> None:
    """Submitted runs use <release>-pipeline, the account the chart's RoleBinding gives the pipeline Role."""
    docs = objects("default")
    binding = one(docs, "RoleBinding", "simplear-pipeline")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pipeline_service_account("simplear"),
                                    "namespace": NAMESPACE}]
    client = RecordingClient()
    assert submit(client, "simplear-lifecycle", {"preset": "tiny"}, "simplear", "demo") == "run-1"
    ((package, options),) = client.calls
    assert Path(package) == COMPILED / "simplear-lifecycle.yaml" and Path(package).is_file()
    assert options == {"arguments": {"preset": "tiny"}, "experiment_name": "demo",
                       "service_account": "simplear-pipeline"}

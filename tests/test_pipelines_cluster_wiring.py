"""What every component pod gets on the cluster, read from the compiled YAML the chart registers."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml
from helpers import NAMESPACE, objects, one

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # pipelines/ is a folder of the repository, not an installed package

from pipelines.compile import COMPILED, PIPELINES  # noqa: E402
from pipelines.submit import pipeline_service_account, submit  # noqa: E402
from simplear.platform.platform_discovery import PLATFORM_SELECTOR, RELEASE_LABEL  # noqa: E402

KFP_TESTS = Path(__file__).resolve().parent / "kfp"


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


def platform_tasks() -> list[tuple[str, dict, dict]]:
    """Every executor but the one that finds the platform."""
    return [entry for entry in every_executor() if not entry[0].endswith("/exec-find-platform")]


def found_by_the_first_task(key: str) -> dict:
    """The parameter spec of an output of the find-platform task."""
    return {"taskOutputParameter": {"outputParameterKey": key, "producerTask": "find-platform"}}


def test_every_pipeline_finds_its_platform_first_and_uncached() -> None:
    """find-platform runs before everything (every other task depends on it), without cache, store or config."""
    for name in PIPELINES:
        spec, kubernetes = documents(name)
        tasks = spec["root"]["dag"]["tasks"]
        assert tasks["find-platform"]["cachingOptions"] == {}, name  # enableCache absent: off
        assert "secretAsEnv" not in kubernetes["exec-find-platform"]
        for task, body in tasks.items():
            if task != "find-platform":
                assert "find-platform" in body.get("dependentTasks", []), (name, task)


def test_every_component_pod_gets_the_store_credentials_from_the_found_secret() -> None:
    """AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the Secret the platform ConfigMap names (found at run time)."""
    for where, _, kubernetes in platform_tasks():
        (secret,) = kubernetes["secretAsEnv"]
        assert secret["secretNameParameter"] == found_by_the_first_task("store_secret"), where
        assert {(e["secretKey"], e["envVar"]) for e in secret["keyToEnv"]} == {
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")}, where


def test_every_component_pod_mounts_the_found_platform_config_map_where_components_read_it() -> None:
    """The found ConfigMap at /etc/simplear; SIMPLEAR_PLATFORM_CONFIG names its platform.json."""
    for where, container, kubernetes in platform_tasks():
        (volume,) = kubernetes["configMapAsVolume"]
        assert volume["configMapNameParameter"] == found_by_the_first_task("config_map"), where
        assert volume["mountPath"] == "/etc/simplear", where
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["SIMPLEAR_PLATFORM_CONFIG"] == "/etc/simplear/platform.json", where


def test_the_found_config_map_holds_what_the_components_read() -> None:
    """The chart's platform ConfigMap carries the labels the first task finds it by, and platform.json."""
    config_map = one(objects("default"), "ConfigMap", "simplear-platform")
    labels = config_map["metadata"]["labels"]
    selector = dict(term.split("=") for term in PLATFORM_SELECTOR.split(","))
    assert selector.items() <= labels.items() and labels[RELEASE_LABEL] == "simplear"
    assert set(config_map["data"]) == {"platform.json"}
    platform = json.loads(config_map["data"]["platform.json"])
    assert platform["storeEndpoint"] and platform["storeSecret"] == "simplear-store"
    assert platform["inferenceService"] == "simplear"


def test_every_component_pod_runs_on_the_cpu_pool_and_platform_pods_are_store_clients() -> None:
    """nodeSelector and tolerations from the cpu pool parameters, the cpu pool's size; the MinIO client label on
    every pod that reads the store."""
    for where, container, kubernetes in every_executor():
        assert kubernetes["nodeSelector"] == {"nodeSelectorJson": {"componentInputParameter": "cpu_node_selector"}}
        assert kubernetes["tolerations"] == [{"tolerationJson": {"componentInputParameter": "cpu_tolerations"}}]
        assert kubernetes["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001", "runAsNonRoot": True}
        resources = container["resources"]
        assert (resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == ("2", "8Gi"), where
    for where, _, kubernetes in platform_tasks():
        assert kubernetes["podMetadata"]["labels"] == {"simplear.io/store-client": "true"}, where


def proto_fields(path: Path) -> dict[str, dict[str, str]]:
    """message -> field -> type of a .proto file (nested messages' fields counted under their own names too)."""
    fields: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for line in path.read_text().splitlines():
        line = line.split("//")[0].strip()
        if match := re.match(r"message (\w+) \{", line):
            stack.append(match.group(1))
            fields.setdefault(stack[-1], {})
        elif match := re.match(r"(?:repeated |optional )?([\w.<>, ]+?) (\w+) = \d+;", line):
            fields[stack[-1]][match.group(2)] = match.group(1).split(".")[-1]
        elif line.startswith("oneof"):
            stack.append(stack[-1])
        elif line == "}" and stack:
            stack.pop()
    return fields


def snake(name: str) -> str:
    """A protobuf JSON name as its field name."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def test_the_minimum_kfp_backend_knows_every_kubernetes_field_the_pipelines_use() -> None:
    """Every field of the compiled Kubernetes platform config exists in KFP 2.5.0's proto (the oldest driver we
    support: nodeSelectorJson, tolerationJson and parameterised Secret / ConfigMap names arrived there). The one
    exception is securityContext (KFP 2.16): older drivers skip unknown fields and the images run as 10001 anyway;
    a field it does not know that holds its default (secretAsEnv.optional: false) means the same when skipped."""
    fields = proto_fields(KFP_TESTS / "kubernetes_executor_config-2.5.0.proto")
    for where, _, kubernetes in every_executor():
        for key, value in kubernetes.items():
            if key == "securityContext":
                continue
            kind = fields["KubernetesExecutorConfig"].get(snake(key))
            assert kind, f"{where}: {key} is unknown to KFP 2.5.0"
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and kind in fields:
                    # An unknown field holding its default (optional: false) means the same when skipped.
                    unknown = {k for k, v in item.items() if snake(k) not in fields[kind] and v not in (False, "", 0)}
                    assert not unknown, f"{where}: {key}.{unknown} is unknown to KFP 2.5.0"
    assert "node_selector_json" in fields["NodeSelector"] and "toleration_json" in fields["Toleration"]


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
    assert options == {"arguments": {"release": "simplear", "preset": "tiny"}, "experiment_name": "demo",
                       "service_account": "simplear-pipeline"}

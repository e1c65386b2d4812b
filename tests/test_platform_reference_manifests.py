"""k8s/: the reference manifests are what `simplear manifests` generates now, and every object in them validates."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import KUBERNETES_VERSIONS, NAMESPACE, RELEASE, chart_platform_config, pod_specs_of, validation_errors

from simplear.platform import manifests_command
from simplear.platform.default_platform import default_platform_config
from simplear.platform.reference_yaml import HEADER, reference_yaml

K8S = Path(__file__).resolve().parents[1] / "k8s"


def run_manifests(*argv: str) -> int:
    """`simplear manifests` with these arguments."""
    parser = argparse.ArgumentParser()
    manifests_command.add_arguments(parser)
    return manifests_command.run(parser.parse_args(argv))


def documents(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_k8s_folder_is_up_to_date() -> None:
    """Each generated file matches the builders' output; no stale generated file is left (regenerate otherwise)."""
    expected = reference_yaml(default_platform_config(), "simplear")
    on_disk = {path.name: path.read_text() for path in K8S.glob("*.yaml")}
    assert sorted(on_disk) == sorted(expected), "run `simplear manifests --out k8s/`"
    stale = [name for name, text in expected.items() if on_disk[name] != text]
    assert stale == [], f"out of date: {stale}; run `simplear manifests --out k8s/`"


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_every_reference_object_validates(kubernetes_version: str) -> None:
    """The files on disk, object by object, against the CRDs and the API schemas (strict)."""
    problems = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in documents(path.read_text()):
            if errors := validation_errors(doc, kubernetes_version):
                problems[f"{path.name}:{doc['kind']}/{doc['metadata']['name']}"] = errors
    assert problems == {}


def test_reference_covers_every_stage_without_pipelines() -> None:
    """Six PyTorchJobs in run order (GRPO's rollout server its master's sidecar), then serving, then the two-node and
    rollout-pool variants; nothing needs KFP or a namespace."""
    kinds = {path.name: [(d["kind"], d["metadata"]["name"]) for d in documents(path.read_text())]
             for path in sorted(K8S.glob("*.yaml"))}
    assert kinds == {
        "01-shapes.yaml": [("PyTorchJob", "simplear-shapes")],
        "02-tokenize.yaml": [("PyTorchJob", "simplear-tokenize")],
        "03-pretrain.yaml": [("PyTorchJob", "simplear-pretrain")],
        "04-sft.yaml": [("PyTorchJob", "simplear-sft")],
        "05-grpo.yaml": [("PyTorchJob", "simplear-grpo")],
        "06-evaluate.yaml": [("PyTorchJob", "simplear-evaluate")],
        "07-serve.yaml": [("ServiceAccount", "simplear-serve"), ("ServingRuntime", "simplear-runtime"),
                          ("InferenceService", "simplear")],
        "08-pretrain-two-nodes.yaml": [("PyTorchJob", "simplear-pretrain-2nodes")],
        "09-grpo-rollout-pool.yaml": [("PyTorchJob", "simplear-grpo-pool"),
                                      ("Deployment", "simplear-grpo-pool-rollout"),
                                      ("Service", "simplear-grpo-pool-rollout")],
    }
    for path in K8S.glob("*.yaml"):
        assert path.read_text().startswith(HEADER)
        assert "&id" not in path.read_text(), f"{path.name} shares objects between fields (YAML anchors)"
        assert all("namespace" not in d["metadata"] for d in documents(path.read_text()))


def test_each_stage_reads_what_the_one_before_wrote() -> None:
    """The store paths chain: shapes -> tokenize -> pretrain -> sft -> grpo (and its rollout) -> evaluate, serve."""
    def args(name: str) -> list[str]:
        """The container command of the file's PyTorchJob."""
        (job,) = [d for d in documents((K8S / name).read_text()) if d["kind"] == "PyTorchJob"]
        return job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]

    def flag(command: list[str], name: str) -> str:
        """The value after a flag."""
        return command[command.index(name) + 1]

    assert flag(args("02-tokenize.yaml"), "--meta") == flag(args("01-shapes.yaml"), "--out") + "/meta.jsonl"
    assert flag(args("03-pretrain.yaml"), "--data") == flag(args("02-tokenize.yaml"), "--output")
    assert flag(args("04-sft.yaml"), "--init-from") == flag(args("03-pretrain.yaml"), "--output") + "/final"
    assert flag(args("05-grpo.yaml"), "--init-from") == flag(args("04-sft.yaml"), "--output") + "/final"
    assert flag(args("06-evaluate.yaml"), "--model") == flag(args("05-grpo.yaml"), "--output") + "/final"
    serve = documents((K8S / "07-serve.yaml").read_text())[2]
    assert serve["spec"]["predictor"]["model"]["storageUri"] == flag(args("05-grpo.yaml"), "--output") + "/final"


def test_the_variants_are_two_nodes_and_a_rollout_pool() -> None:
    """08: pretraining on a Master and a Worker (torchrun across both); 09: GRPO with its server on the rollout
    pool, reached through the Service."""
    (job,) = documents((K8S / "08-pretrain-two-nodes.yaml").read_text())
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 1)
    assert "--nnodes=2" in replicas["Worker"]["template"]["spec"]["containers"][0]["command"]
    pool_job = documents((K8S / "09-grpo-rollout-pool.yaml").read_text())[0]
    command = pool_job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--rollout-url") + 1] == "http://simplear-grpo-pool-rollout:8000"


def test_readme_names_every_file_and_the_storage_uri_patch() -> None:
    """The README lists every file and patches model.storageUri, the field 07-serve.yaml sets."""
    readme = (K8S / "README.md").read_text()
    assert '{"spec": {"predictor": {"model": {"storageUri":' in readme
    for path in K8S.glob("*.yaml"):
        assert path.name in readme


def test_default_platform_config_is_what_the_chart_renders_by_default() -> None:
    """The config `simplear manifests` builds from equals the chart's platform ConfigMap for its default values."""
    assert default_platform_config(RELEASE, NAMESPACE) == chart_platform_config("default")


def test_manifests_command_writes_from_a_platform_config_and_drops_stale_files(tmp_path: Path) -> None:
    """--platform-config with custom pools: files follow it; a stale generated file goes, a hand-written one stays."""
    platform = tmp_path / "platform.json"
    platform.write_text(chart_platform_config("custom-pools").model_dump_json(by_alias=True))
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "99-old.yaml").write_text(HEADER + "---\n{}\n")
    (out / "mine.yaml").write_text("kind: ConfigMap\n")
    assert run_manifests("--out", str(out), "--platform-config", str(platform), "--release", "team") == 0
    assert not (out / "99-old.yaml").exists() and (out / "mine.yaml").exists()
    (job,) = documents((out / "03-pretrain.yaml").read_text())
    (_, _, pod), = pod_specs_of(job)
    assert job["metadata"]["name"] == "team-simplear-pretrain"
    assert pod["nodeSelector"] == {"pool": "train-h100"}
    assert job["spec"]["nprocPerNode"] == "8"


def test_manifests_command_refuses_a_bad_platform_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A config missing its pools is reported in one message, exit status 2, nothing written."""
    platform = tmp_path / "platform.json"
    platform.write_text(json.dumps({"images": {}, "pools": {}}))
    assert run_manifests("--out", str(tmp_path / "k8s"), "--platform-config", str(platform)) == 2
    assert "cannot use platform config" in capsys.readouterr().err
    assert not (tmp_path / "k8s").exists()

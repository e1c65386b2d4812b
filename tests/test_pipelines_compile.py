"""The compiled pipelines are up to date, shipped by the chart unchanged, and run on the base image unmodified."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import yaml
from helpers import build_wheel, objects, one

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # pipelines/ is a folder of the repository, not an installed package

import simplear.compiled_pipelines  # noqa: E402
from pipelines.compile import CHART_PIPELINES, COMPILED, PIPELINES, compile_all  # noqa: E402
from simplear.compiled_pipelines import compiled_pipeline  # noqa: E402


def compiled(name: str) -> dict:
    """One compiled pipeline as parsed YAML (the pipeline spec; the platform spec is its second document)."""
    return next(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text()))


def test_compiled_yaml_is_what_the_pipelines_compile_to(tmp_path: Path) -> None:
    """Recompiling gives byte-identical files, one per pipeline and no others."""
    fresh = {path.name: path.read_bytes() for path in compile_all(tmp_path)}
    committed = {path.name: path.read_bytes() for path in COMPILED.glob("*.yaml")}
    assert set(fresh) == {f"{name}.yaml" for name in PIPELINES}
    assert committed.keys() == fresh.keys()
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{stale} out of date: run `python -m pipelines.compile`"


def test_the_wheel_ships_the_compiled_pipelines_the_chart_ships(tmp_path: Path) -> None:
    """`simplear demo` and `pipelines.submit` read the compiled YAML from the package, so an installed wheel holds
    it as package data, byte-identical to the chart's copies."""
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        shipped = {Path(name).name: archive.read(name) for name in archive.namelist()
                   if name.startswith("simplear/compiled_pipelines/") and name.endswith(".yaml")}
    assert shipped == {path.name: path.read_bytes() for path in CHART_PIPELINES.glob("*.yaml")}
    assert compiled_pipeline("simplear-lifecycle").parent == Path(simplear.compiled_pipelines.__file__).parent


def test_chart_ships_exactly_the_compiled_pipelines() -> None:
    """helm/simplear/files/pipelines holds a byte-identical copy of every compiled pipeline and no other YAML."""
    shipped = {path.name: path.read_bytes() for path in CHART_PIPELINES.glob("*.yaml")}
    assert shipped == {path.name: path.read_bytes() for path in COMPILED.glob("*.yaml")}


def test_every_pipeline_is_named_after_its_file() -> None:
    """The chart registers each file under its stem, which is also the pipeline's name."""
    for name in PIPELINES:
        assert compiled(name)["pipelineInfo"]["name"] == name


def test_components_run_on_the_charts_base_image_and_install_nothing() -> None:
    """Every executor runs kfp's executor on the image the base_image parameter names, without pip."""
    platform = json.loads(one(objects("default"), "ConfigMap", "simplear-platform")["data"]["platform.json"])
    for name in PIPELINES:
        spec = compiled(name)
        default = spec["root"]["inputDefinitions"]["parameters"]["base_image"]["defaultValue"]
        assert default == platform["images"]["base"], name
        for executor, body in spec["deploymentSpec"]["executors"].items():
            container = body["container"]
            command = " ".join(container["command"] + container.get("args", []))
            assert container["image"] == "{{$.inputs.parameters['pipelinechannel--base_image']}}", executor
            assert "kfp.dsl.executor_main" in command, executor
            assert "pip install" not in command, executor


def test_stage_components_go_through_a_launcher_and_never_build_pods() -> None:
    """Stage components call run_stage (a Launcher); no component creates Kubernetes objects itself."""
    spec = compiled("simplear-lifecycle")
    executors = spec["deploymentSpec"]["executors"]
    sources = {name: " ".join(body["container"]["command"]) for name, body in executors.items()}
    stages = ("pretrain", "sft", "grpo", "evaluate", "shapes-data", "tokenize-data")
    for executor in (f"exec-{stage}" for stage in stages):
        assert "run_stage_step(launcher, stage, spec" in sources[executor], executor
        assert "def run_stage(" in sources[executor], executor
    for executor, source in sources.items():
        assert "create_namespaced" not in source and "V1Pod" not in source, executor

"""Images can be published: docker-bake.hcl builds every role of images/Dockerfile for a named registry and tag, the
version-tag workflow pushes them (actionlint-clean), and the chart's defaults name exactly those images."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import hcl2
import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"
ACTIONLINT = ROOT / ".venv" / "bin" / "actionlint"
ROLES = ("base", "train", "rollout", "serve")


def unquote(value: object) -> object:
    """python-hcl2 keeps string literals' quotes: strip them, recursively."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [unquote(item) for item in value]
    if isinstance(value, dict):
        return {unquote(key): unquote(item) for key, item in value.items() if key != "__is_block__"}
    return value


def bake() -> dict[str, dict]:
    """docker-bake.hcl as {"variable": {...}, "target": {...}, "group": {...}}."""
    parsed = hcl2.load((ROOT / "docker-bake.hcl").open())
    return {kind: {name: unquote(body) for block in parsed.get(kind, []) for name, body in unquote(block).items()}
            for kind in ("variable", "target", "group")}


def image_of(tag_template: str, variables: dict[str, str]) -> str:
    """A bake tag with ${VARIABLE}s filled in."""
    return re.sub(r"\$\{(\w+)\}", lambda match: variables[match.group(1)], tag_template)


def test_bake_builds_every_role_stage_of_the_dockerfile_for_a_registry_and_tag() -> None:
    """One target per role, each that role's Dockerfile stage, tagged ${REGISTRY}/simplear-<role>:${TAG}."""
    spec = bake()
    assert set(spec["variable"]) >= {"REGISTRY", "TAG", "CUDA"}
    assert spec["group"]["default"]["targets"] == list(ROLES)
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "images" / "Dockerfile").read_text(), re.MULTILINE))
    for role in ROLES:
        target = spec["target"][role]
        assert target["target"] == role and role in stages
        assert target["tags"] == [f"${{REGISTRY}}/simplear-{role}:${{TAG}}"]
    common = spec["target"]["_role"]
    assert (common["context"], common["dockerfile"]) == (".", "images/Dockerfile")
    assert common["args"] == {"CUDA": "CUDA"}


def test_the_charts_default_images_are_what_bake_builds_by_default() -> None:
    """values.yaml pulls ghcr.io/simplear/simplear-<role>:<appVersion>, bake's defaults, which the workflow pushes
    for the tag v<appVersion> of the simplear repository owner."""
    spec = bake()
    defaults = {name: body["default"] for name, body in spec["variable"].items()}
    with helm.Chart.load(ROOT / "helm" / "simplear") as chart:
        images = chart.values["images"]
    app_version = yaml.safe_load((ROOT / "helm" / "simplear" / "Chart.yaml").read_text())["appVersion"]
    assert defaults["TAG"] == app_version
    for role in ROLES:
        pulled = f"{images[role]['registry']}/{images[role]['repository']}:{images[role]['tag']}"
        assert pulled == image_of(spec["target"][role]["tags"][0], defaults)


def test_the_workflow_pushes_the_bake_targets_on_a_version_tag() -> None:
    """On a v*.*.* tag: check it against the chart's appVersion, log in to ghcr.io, bake and push."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["push"] == {"tags": ["v*.*.*"]}  # YAML 1.1 reads the key `on` as True
    assert workflow["permissions"] == {"contents": "read", "packages": "write"}
    steps = workflow["jobs"]["publish"]["steps"]
    bake_step = next(step for step in steps if step.get("uses", "").startswith("docker/bake-action@"))
    assert bake_step["with"] == {"source": ".", "files": "docker-bake.hcl", "push": True}
    script = "\n".join(step.get("run", "") for step in steps)
    assert 'REGISTRY=ghcr.io/${GITHUB_REPOSITORY_OWNER,,}' in script and 'TAG=${tag}' in script
    assert "appVersion" in script


def test_actionlint_finds_nothing_in_the_workflow() -> None:
    """actionlint (from PyPI) reports no error in the publishing workflow."""
    result = subprocess.run([str(ACTIONLINT), "-no-color", str(WORKFLOW)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_actionlint_is_really_checking(tmp_path: Path) -> None:
    """The same call flags a workflow with an undefined expression context."""
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("${{ github.actor }}", "${{ githubb.actor }}"))
    result = subprocess.run([str(ACTIONLINT), "-no-color", str(broken)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode != 0 and "githubb" in result.stdout

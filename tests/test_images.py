"""The container images: multi-stage, pinned, non-root, the right simplear extra per role, lint-clean."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import helm_python as helm
import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
ROLES = ("base", "train", "rollout", "serve")
# The simplear extra each role's image installs (rollout: the core package beside vLLM).
EXTRAS = {"base": "pipelines", "train": "train", "serve": "serve", "rollout": None}
# Roles that serve HTTP: port and the route their HEALTHCHECK asks.
SERVING = {"serve": (8080, "/v2/health/ready"), "rollout": (8000, "/health")}
PINNED_BASE = re.compile(r"^python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[a-f0-9]{64})?$")
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)

Instruction = tuple[str, str]


def instructions(role: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) of images/<role>/Dockerfile, continuation lines joined, comments dropped."""
    text = (IMAGES / role / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    parsed = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            parsed.append((keyword.upper(), " ".join(rest.split())))
    return parsed


def stages(role: str) -> list[list[Instruction]]:
    """The Dockerfile's build stages, each starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions(role):
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def runs(stage: list[Instruction]) -> str:
    """Every RUN of a stage, one after another."""
    return " && ".join(args for keyword, args in stage if keyword == "RUN")


@pytest.mark.parametrize("role", ROLES)
def test_image_is_a_builder_stage_and_a_slim_runtime(role: str) -> None:
    """A builder builds the wheel into /opt/venv; the runtime stage copies only that venv."""
    builder, runtime = stages(role)
    assert builder[0][1].endswith(" AS builder")
    assert "pip wheel --no-deps --wheel-dir /wheels ." in runs(builder)
    assert "python -m venv /opt/venv" in runs(builder)
    copies = [args for keyword, args in runtime if keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    assert "pip" not in runs(runtime)


@pytest.mark.parametrize("role", ROLES)
def test_base_images_are_pinned_to_exact_versions(role: str) -> None:
    """Every FROM names an exact python x.y.z slim tag, the same in both stages."""
    references = [args.split()[0] for keyword, args in instructions(role) if keyword == "FROM"]
    assert all(PINNED_BASE.match(reference) for reference in references), references
    assert len(set(references)) == 1


@pytest.mark.parametrize("role", ROLES)
def test_image_installs_the_extra_its_role_needs(role: str) -> None:
    """The wheel is installed with exactly the role's extra (none beside vLLM)."""
    builder, _ = stages(role)
    installs = [cmd for cmd in runs(builder).split(" && ") if "pip install" in cmd and "simplear-*.whl" in cmd]
    assert len(installs) == 1
    extras = re.findall(r"simplear-\*\.whl'\)(?:\[(\w+)\])?", installs[0])
    assert extras == [EXTRAS[role] or ""]


def test_rollout_keeps_the_torch_vllm_brought() -> None:
    """vLLM is installed first, pinned; simplear then installs under a constraint holding vLLM's torch."""
    builder, _ = stages("rollout")
    commands = [cmd.strip() for cmd in runs(builder).split(" && ")]
    vllm = next(i for i, cmd in enumerate(commands) if cmd.startswith("pip install vllm=="))
    simplear = next(i for i, cmd in enumerate(commands) if "simplear-*.whl" in cmd and "pip install" in cmd)
    assert vllm < simplear
    assert re.fullmatch(r"pip install vllm==\d+\.\d+\.\d+", commands[vllm])
    assert "print('torch==' + m.version('torch'))\" > /opt/vllm-torch.txt" in commands[vllm + 1]
    assert "--constraint /opt/vllm-torch.txt" in commands[simplear]


@pytest.mark.parametrize("role", ROLES)
def test_image_runs_as_the_charts_non_root_user(role: str) -> None:
    """The runtime stage ends as a numeric non-root user: the UID/GID the chart's pods run as."""
    _, runtime = stages(role)
    users = [args for keyword, args in runtime if keyword == "USER"]
    with helm.Chart.load(ROOT / "helm" / "simplear") as chart:
        context = chart.values["podSecurityContext"]
    assert users == [f"{context['runAsUser']}:{context['runAsGroup']}"]
    assert f"--uid {context['runAsUser']}" in runs(runtime)


@pytest.mark.parametrize("role", ROLES)
def test_serving_images_have_an_exec_form_healthcheck(role: str) -> None:
    """serve and rollout probe their health route on their exposed port; batch images have no server to probe."""
    _, runtime = stages(role)
    checks = [args for keyword, args in runtime if keyword == "HEALTHCHECK"]
    if role not in SERVING:
        assert checks == []
        return
    port, route = SERVING[role]
    (check,) = checks
    command = check.split(" CMD ", 1)[1]
    assert command.startswith("[") and command.endswith("]"), "exec form"
    assert f"http://127.0.0.1:{port}{route}" in command
    assert ("EXPOSE", str(port)) in runtime


@pytest.mark.parametrize("role", ROLES)
def test_no_secret_is_baked_into_an_image(role: str) -> None:
    """No ARG or ENV carries a credential."""
    for keyword, args in instructions(role):
        if keyword in ("ARG", "ENV"):
            names = [token.split("=")[0] for token in shlex.split(args)]
            assert not any(SECRET_LIKE.search(name) for name in names), args


@pytest.mark.parametrize("role", ROLES)
def test_build_context_is_limited_to_the_package_sources(role: str) -> None:
    """The Dockerfile's own .dockerignore excludes everything but pyproject, README and simplear/."""
    patterns = [
        line.strip()
        for line in (IMAGES / role / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md", "!simplear/"}


@pytest.mark.parametrize("role", ROLES)
def test_hadolint_reports_nothing(role: str) -> None:
    """hadolint finds no error, warning, info or style issue, and no rule is switched off inline."""
    dockerfile = IMAGES / role / "Dockerfile"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    assert "hadolint ignore" not in dockerfile.read_text()


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    """The same call flags a Dockerfile on an unpinned base image."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:latest\nUSER 10001\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout

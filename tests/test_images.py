"""The container images: one multi-target Dockerfile, a shared wheel stage, one extra per role, pinned, non-root,
CUDA stated, lint-clean."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import helm_python as helm
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "images" / "Dockerfile"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
ROLES = ("base", "train", "rollout", "serve")
GPU_ROLES = ("train", "rollout", "serve")
# Roles that serve HTTP: port and the route their HEALTHCHECK asks.
SERVING = {"serve": (8080, "/v2/health/ready"), "rollout": (8000, "/health")}
PINNED_BASE = re.compile(r"^python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[a-f0-9]{64})?$")
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) of images/Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    parsed = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            parsed.append((keyword.upper(), " ".join(rest.split())))
    return parsed


def stages() -> dict[str, list[Instruction]]:
    """Build stages by name, each starting with its FROM."""
    result: dict[str, list[Instruction]] = {}
    current = None
    for instruction in instructions():
        if instruction[0] == "FROM":
            current = instruction[1].split(" AS ")[-1]
            result[current] = []
        if current is not None:
            result[current].append(instruction)
    return result


def runs(stage: list[Instruction]) -> str:
    """Every RUN of a stage, one after another."""
    return " && ".join(args for keyword, args in stage if keyword == "RUN")


def parent(stage: list[Instruction]) -> str:
    """The stage or image a stage starts FROM."""
    return stage[0][1].split(" AS ")[0]


def test_one_wheel_stage_feeds_every_role() -> None:
    """The wheel is built once; every role's installer stage takes it from there."""
    all_stages = stages()
    assert "pip wheel --no-deps --wheel-dir /wheels ." in runs(all_stages["wheel"])
    assert [name for name, stage in all_stages.items() if "pip wheel" in runs(stage)] == ["wheel"]
    assert ("COPY", "--from=wheel /wheels /wheels") in all_stages["installer"]
    for role in ROLES:
        assert parent(all_stages[f"{role}-venv"]) == "installer"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_image_copies_only_its_own_venv(role: str) -> None:
    """The role's target starts from the shared runtime and copies exactly its role's /opt/venv; no pip there."""
    stage = stages()[role]
    assert parent(stage) == "runtime"
    assert [args for keyword, args in stage if keyword == "COPY"] == [f"--from={role}-venv /opt/venv /opt/venv"]
    assert "pip" not in runs(stage)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_installs_exactly_its_extra(role: str) -> None:
    """install-role gets the role's name: the wheel with that extra (images/install-role.sh), nothing else."""
    (command,) = [args for keyword, args in stages()[f"{role}-venv"] if keyword == "RUN"]
    assert shlex.split(command)[:3] == ["install-role", "/opt/venv", role]


def test_the_installer_installs_the_wheel_with_the_roles_extra_and_vllm_first() -> None:
    """install-role.sh: `<wheel>[<role>]`; for rollout vLLM first, its torch held as a constraint."""
    script = (ROOT / "images" / "install-role.sh").read_text()
    assert '"$pip" install "$@" "$wheel[$role]"' in script
    vllm, constraint = script.index('"$pip" install "$@" "$vllm"'), script.index('--constraint "$venv/vllm-torch.txt"')
    assert vllm < constraint


def test_gpu_images_state_their_cuda() -> None:
    """A CUDA build argument names the PyTorch index (cuXXX) the GPU roles install torch from, and labels them."""
    all_stages = stages()
    (cuda,) = [args for keyword, args in instructions() if keyword == "ARG" and args.startswith("CUDA=")]
    assert re.fullmatch(r"CUDA=cu\d{3}", cuda)
    for role in GPU_ROLES:
        assert "https://download.pytorch.org/whl/${CUDA}" in runs(all_stages[f"{role}-venv"])
        assert any(keyword == "LABEL" and 'io.simplear.cuda="${CUDA}"' in args for keyword, args in all_stages[role])
    assert "download.pytorch.org" not in runs(all_stages["base-venv"])


def test_base_images_are_pinned_to_exact_versions() -> None:
    """Every FROM is an exact python x.y.z slim tag (one of them) or a stage of this file."""
    all_stages = stages()
    external = {parent(stage) for stage in all_stages.values()} - set(all_stages)
    assert len(external) == 1 and PINNED_BASE.match(external.pop())


@pytest.mark.parametrize("role", ROLES)
def test_image_runs_as_the_charts_non_root_user(role: str) -> None:
    """Each role ends as the numeric non-root user the chart's pods run as, created in the runtime stage."""
    users = [args for keyword, args in stages()[role] if keyword == "USER"]
    with helm.Chart.load(ROOT / "helm" / "simplear") as chart:
        context = chart.values["podSecurityContext"]
    assert users == [f"{context['runAsUser']}:{context['runAsGroup']}"]
    assert f"--uid {context['runAsUser']}" in runs(stages()["runtime"])


@pytest.mark.parametrize("role", ROLES)
def test_serving_images_have_an_exec_form_healthcheck(role: str) -> None:
    """serve and rollout probe their health route on their exposed port; batch images have no server to probe."""
    stage = stages()[role]
    checks = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    if role not in SERVING:
        assert checks == []
        return
    port, route = SERVING[role]
    (check,) = checks
    command = check.split(" CMD ", 1)[1]
    assert command.startswith("[") and command.endswith("]"), "exec form"
    assert f"http://127.0.0.1:{port}{route}" in command
    assert ("EXPOSE", str(port)) in stage


def test_no_secret_is_baked_into_an_image() -> None:
    """No ARG or ENV carries a credential."""
    for keyword, args in instructions():
        if keyword in ("ARG", "ENV"):
            names = [token.split("=")[0] for token in shlex.split(args)]
            assert not any(SECRET_LIKE.search(name) for name in names), args


def test_build_context_is_limited_to_the_package_sources() -> None:
    """The Dockerfile's own .dockerignore excludes everything but pyproject, README, simplear/ and the installer."""
    patterns = [line.strip() for line in (ROOT / "images" / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md", "!simplear/",
                                                          "!images/install-role.sh"}


def test_hadolint_reports_nothing() -> None:
    """hadolint finds no error, warning, info or style issue, and no rule is switched off inline."""
    result = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    """The same call flags a Dockerfile on an unpinned base image."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:latest\nUSER 10001\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout

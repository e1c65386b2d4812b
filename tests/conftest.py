"""Shared test fixtures: a real S3 server (SeaweedFS) with a fresh bucket per test, model servers, tiny policies,
the vLLM closure's Python."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from simplear.config import get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.s3_server import EmbeddedS3
from simplear.serve.process import ServerProcess
from simplear.store import Store

VLLM_PYTHON = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The Python of the rollout role's closure (.venv-vllm), which runs the vLLM engine; fails when it is absent."""
    if not VLLM_PYTHON.is_file():
        pytest.fail(f"{VLLM_PYTHON} is missing: run scripts/role_venvs.sh to create the vLLM (rollout role) virtualenv")
    return VLLM_PYTHON


@pytest.fixture(scope="session")
def s3_server() -> Iterator[EmbeddedS3]:
    """One SeaweedFS S3 server on 127.0.0.1 for the whole session, stopped at the end."""
    with EmbeddedS3() as server:
        yield server


@pytest.fixture
def s3_store(s3_server: EmbeddedS3) -> tuple[Store, str]:
    """A Store reaching the session's S3 server and the URI of a fresh, empty bucket."""
    bucket = "test-" + secrets.token_hex(8)
    s3_server.create_bucket(bucket)
    return Store(s3_server.settings()), f"s3://{bucket}"


@contextlib.contextmanager
def _all_serving(servers: dict[str, ServerProcess]) -> Iterator[dict[str, ServerProcess]]:
    """Launch every server, wait until each is ready, yield them; stop them all and remove their logs."""
    try:
        for server in servers.values():
            server.launch()
        for server in servers.values():
            server.wait_ready()
        yield servers
    finally:
        for server in servers.values():
            server.stop()
            server.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def all_serving() -> Callable[[dict[str, ServerProcess]], contextlib.AbstractContextManager]:
    """Start model servers side by side (launched together, so their loads overlap) for a module's tests."""
    return _all_serving


@pytest.fixture(scope="module")
def peaked_model() -> SimpleARModel:
    """A random tiny model whose next-code distributions are peaked and depend on the context."""
    model = SimpleARModel.random_init(get_preset("tiny"), seed=3)
    with torch.no_grad():
        model.lm.lm_head.weight.mul_(4.0)
    return model


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny policies saved as checkpoints: the initial one (seed 0) and the one a trainer pushes (seed 1)."""
    root = tmp_path_factory.mktemp("policies")
    for name, seed in (("initial", 0), ("trained", 1)):
        SimpleARModel.random_init(get_preset("tiny"), seed=seed).save(root / name)
    return {"initial": root / "initial", "trained": root / "trained"}

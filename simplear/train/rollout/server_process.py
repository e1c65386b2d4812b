"""`simplear rollout-server` in a child process on 127.0.0.1 and a free port, for tests and benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path

from simplear.child_server import ChildServer


class RolloutServerProcess(ChildServer):
    """A rollout server child run by `python` (e.g. .venv-vllm's), ready once /health answers."""

    def __init__(self, args: list[str], python: str | Path = sys.executable, startup_timeout_s: float = 300.0,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(["rollout-server", *args], "--port", "/health", python=python, env=env,
                         startup_timeout_s=startup_timeout_s)

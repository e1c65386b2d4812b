"""`simplear serve` in a child process on 127.0.0.1 and a free port, for tests and benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path

from simplear.child_server import ChildServer


class ServerProcess(ChildServer):
    """A `simplear serve` child, ready once KServe reports the model ready."""

    def __init__(self, args: list[str], model_name: str = "simplear", startup_timeout_s: float = 300.0,
                 python: str | Path = sys.executable) -> None:
        super().__init__(["serve", "--model-name", model_name, *args], "--http-port",
                         f"/v2/models/{model_name}/ready", python=python, startup_timeout_s=startup_timeout_s)
        self.model_name = model_name

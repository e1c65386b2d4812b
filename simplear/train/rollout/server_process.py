"""`simplear rollout-server` in a child process on 127.0.0.1 and a free port, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RolloutServerProcess:
    """A rollout server child run by `python` (e.g. .venv-vllm's), its output in a log file; stops on exit."""

    def __init__(self, args: list[str], python: str | Path = sys.executable, startup_timeout_s: float = 300.0,
                 env: dict[str, str] | None = None) -> None:
        self.args, self.python, self.env = args, str(python), env
        self.startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="simplear-rollout-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> RolloutServerProcess:
        """Start the child without waiting for it."""
        command = [self.python, "-m", "simplear.cli", "rollout-server", "--host", "127.0.0.1",
                   "--port", str(self.port), *self.args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        return self

    def wait_ready(self) -> RolloutServerProcess:
        """Block until /health answers 200; RuntimeError with the log tail if the child dies or times out."""
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rollout server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"rollout server not ready after {self.startup_timeout_s:g} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the child and its own children (vLLM's engine core) at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, SIGKILL if it lingers; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the child's output."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> RolloutServerProcess:
        """Launch and wait until ready."""
        return self.launch().wait_ready()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Stop the child and remove its log."""
        self.stop()
        self.log_path.unlink(missing_ok=True)

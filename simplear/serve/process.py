"""`simplear serve` in a child process on 127.0.0.1 and a free port, for tests and benchmarks: launch, await, stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A `simplear serve` child bound to 127.0.0.1, its output in a log file; a context manager that stops it."""

    def __init__(self, args: list[str], model_name: str = "simplear", startup_timeout_s: float = 300.0) -> None:
        self.args = args
        self.model_name = model_name
        self.startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="simplear-serve-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> ServerProcess:
        """Start the child without waiting for it (launch several, then wait for each)."""
        command = [sys.executable, "-m", "simplear.cli", "serve", "--model-name", self.model_name,
                   "--host", "127.0.0.1", "--http-port", str(self.port), *self.args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self) -> ServerProcess:
        """Block until the model answers ready; RuntimeError with the log tail if the child dies or times out."""
        deadline = time.monotonic() + self.startup_timeout_s
        ready_url = f"{self.url}/v2/models/{self.model_name}/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"simplear serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=5) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"simplear serve not ready after {self.startup_timeout_s:g} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (KServe's graceful stop), SIGKILL if it lingers; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the child's output."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> ServerProcess:
        """Launch and wait until ready."""
        return self.launch().wait_ready()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Stop the child and remove its log."""
        self.stop()
        self.log_path.unlink(missing_ok=True)

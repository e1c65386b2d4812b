"""A `simplear` server run as a child process on 127.0.0.1 and a free port: launch, await readiness, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

PARENT_VARIABLE = "SIMPLEAR_PARENT_PID"
WATCH_INTERVAL_S = 0.2
SHUTDOWN_GRACE_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def die_with_parent() -> None:
    """In a child started by ChildServer: stop when the parent is gone, however it ended (SIGTERM, SIGKILL, crash).

    A watchdog thread notices the parent's exit (this process is re-parented), sends this process SIGTERM for a
    graceful shutdown and, if it is still alive after SHUTDOWN_GRACE_S, SIGKILLs its whole session. A no-op in a
    process not started by ChildServer.
    """
    raw = os.environ.pop(PARENT_VARIABLE, None)
    if raw is None:
        return
    parent = int(raw)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL_S)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(SHUTDOWN_GRACE_S)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="simplear-parent-watchdog", daemon=True).start()


class ChildServer:
    """`python -m simplear.cli <command> --host 127.0.0.1 <port flag> PORT ...` in its own session, logged to a file.

    The child stops by itself when this process ends, even by SIGKILL or an unhandled SIGTERM (die_with_parent).
    """

    def __init__(self, command: list[str], port_flag: str, ready_path: str, python: str | Path = sys.executable,
                 env: dict[str, str] | None = None, startup_timeout_s: float = 300.0) -> None:
        self.command, self.port_flag, self.ready_path = command, port_flag, ready_path
        self.python, self.env, self.startup_timeout_s = str(python), env, startup_timeout_s
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix=f"simplear-{command[0]}-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> ChildServer:
        """Start the child without waiting for it (launch several, then wait for each)."""
        command = [self.python, "-m", "simplear.cli", self.command[0], "--host", "127.0.0.1",
                   self.port_flag, str(self.port), *self.command[1:]]
        env = {**(os.environ if self.env is None else self.env), PARENT_VARIABLE: str(os.getpid())}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        return self

    def wait_ready(self) -> ChildServer:
        """Block until the ready path answers 200; RuntimeError with the log tail if the child dies or times out."""
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"simplear {self.command[0]} exited with {code}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=5) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        self.stop()
        waited = f"{self.startup_timeout_s:g} s"
        raise RuntimeError(f"simplear {self.command[0]} not ready after {waited}:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the child and its own children at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (a graceful stop), SIGKILL if it lingers; the exit code."""
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

    def __enter__(self) -> ChildServer:
        """Launch and wait until ready."""
        return self.launch().wait_ready()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Stop the child and remove its log."""
        self.stop()
        self.log_path.unlink(missing_ok=True)

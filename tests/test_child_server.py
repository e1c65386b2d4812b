"""Child servers (`simplear serve`, `simplear rollout-server`) die with the process that started them.

A parent stopped by SIGTERM without a handler runs no `finally` or `__exit__`, so it cannot stop its children:
they notice it is gone and shut down themselves (simplear.child_server.die_with_parent).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow
GRACE_S = 15.0
"""A child's graceful shutdown (simplear.child_server.SHUTDOWN_GRACE_S is 10 s) plus the watchdog's poll and margin."""
PARENT = """
import sys, time
from simplear.serve.process import ServerProcess
from simplear.train.rollout.server import RolloutServerProcess
children = [ServerProcess(["--random-init", "--preset", "tiny", "--device", "cpu"]).launch(),
            RolloutServerProcess(["--engine", "torch", "--model", sys.argv[1], "--device", "cpu"]).launch()]
for child in children:
    child.wait_ready()
print(" ".join(str(child.process.pid) for child in children), flush=True)
time.sleep(600)
"""


def gone(pid: int) -> bool:
    """True once pid has exited (a zombie waiting for init to reap it counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_children_stop_when_their_parent_is_terminated(policies: dict[str, Path]) -> None:
    """SIGTERM a parent holding a model server and a rollout server: both are gone within the grace period."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(policies["initial"])], stdout=subprocess.PIPE,
                              text=True)
    children: list[int] = []
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(children) == 2 and not any(gone(pid) for pid in children), "both children started"
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(30) == -signal.SIGTERM, "the parent died at once, running no cleanup"
        deadline = time.monotonic() + GRACE_S
        while not all(gone(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(pid) for pid in children), "the children outlived their parent"
    finally:
        parent.kill()
        parent.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

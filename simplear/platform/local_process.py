"""A local run seen from any process: its status from the record and the supervisor, cancel, and its logs."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from simplear.platform.launcher import Phase, RunStatus
from simplear.platform.local_runs import RunDir, RunResult

TAIL_BYTES = 64 * 1024


def process_alive(pid: int) -> bool:
    """True while pid runs as the leader of its own process group (as a run's supervisor does), zombies excluded."""
    try:
        os.kill(pid, 0)
        if os.getpgid(pid) != pid:
            return False
    except (ProcessLookupError, PermissionError):
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _from_result(result: RunResult) -> RunStatus:
    """The status a recorded result describes."""
    return RunStatus(result.phase, result.message, result.failed_replica, result.exit_code, result.started,
                     result.finished)


def local_status(run: RunDir) -> RunStatus:
    """Status of a local run: its result once recorded, else whether its supervisor still runs."""
    record = run.read_record()
    result = run.read_result()
    if result is not None:
        return _from_result(result)
    if record.pid is None:
        return RunStatus(Phase.PENDING, "starting", started=record.created)
    if process_alive(record.pid):
        return RunStatus(Phase.RUNNING, started=record.created)
    result = run.read_result()
    if result is not None:
        return _from_result(result)
    return RunStatus(Phase.FAILED, f"supervisor {record.pid} is gone and recorded no result", started=record.created)


def kill_groups(groups: list[int], sig: signal.Signals) -> None:
    """Signal each process group; groups already gone are fine."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)


def cancel_run(run: RunDir, grace_s: float = 10.0) -> None:
    """Stop a run: SIGTERM to its process group, SIGKILL after grace_s, then SIGKILL to any rank's own group still
    there; a no-op once it has finished."""
    if run.read_result() is not None:
        return
    record = run.read_record()
    run.cancel_marker.touch()
    if record.pid is not None and process_alive(record.pid):
        os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while process_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(record.pid):
            os.killpg(record.pid, signal.SIGKILL)
    kill_groups(run.rank_groups(), signal.SIGKILL)
    if run.read_result() is None:
        run.write_result(RunResult(phase=Phase.CANCELLED, message="cancelled before its supervisor recorded it",
                                   started=record.created, finished=datetime.now(UTC)))


def tail_lines(path: Path, count: int = 20) -> list[str]:
    """The last `count` lines of a log file (none when it does not exist)."""
    if not path.is_file():
        return []
    with path.open("rb") as log:
        log.seek(max(0, path.stat().st_size - TAIL_BYTES))
        text = log.read().decode("utf-8", errors="replace")
    return text.splitlines()[-count:]


def follow_lines(path: Path, finished: Callable[[], bool], poll_s: float = 0.2) -> Iterator[str]:
    """Every line of a growing log file, as it is written, until the run has finished and all is read."""
    while not path.exists():
        if finished():
            return
        time.sleep(poll_s)
    with path.open("r", encoding="utf-8", errors="replace") as log:
        pending = ""
        while True:
            chunk = log.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    yield pending.rstrip("\n")
                    pending = ""
                continue
            if finished():
                rest = pending + log.read()
                yield from rest.splitlines()
                return
            time.sleep(poll_s)

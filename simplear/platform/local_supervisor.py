"""The process behind one local run: starts its rollout server and its ranks under torchrun, watches them, records
how the run ended.

Run as `python -m simplear.platform.local_supervisor RUN_DIR` in a new process group. A distributed stage runs the
command of its PyTorchJob's container: `torchrun ... -m simplear.cli ...`, teeing each rank's output with a
`[defaultN]:` prefix, which this process sorts into rankN.log (torchrun's own lines go to torchrun.log). torchrun
starts every rank in a session of its own, so the ranks' process groups are kept in rank-groups, and cancelling
signals them as well as the run's group.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from simplear.platform.launcher import Phase
from simplear.platform.local_process import kill_groups
from simplear.platform.local_runs import RunDir, RunRecord, RunResult

POLL_S = 0.1
STOP_GRACE_S = 10.0
RANK_MARKER = re.compile(rb"\[default(\d+)\]:")
# The root cause torchrun prints when a rank fails (torch/distributed/elastic/multiprocessing/errors/__init__.py,
# ChildFailedError.format_msg): `rank : 0 (local_rank: 0)` then `exitcode : 1 (pid: ...)`.
ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):.*?local_rank:\s*(\d+)\)\s*\n\s*exitcode\s*:\s*(-?\d+)",
                        re.DOTALL)


@dataclass
class Outcome:
    """How the ranks ended."""

    phase: Phase
    message: str = ""
    failed_replica: str | None = None
    exit_code: int | None = None


def is_torchrun(command: list[str]) -> bool:
    """Whether a rank command starts its ranks under torchrun."""
    return command[1:3] == ["-m", "torch.distributed.run"] or Path(command[0]).name == "torchrun"


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start one process of the run, its output to its log file."""
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def sort_lines(stream: BinaryIO, run: RunDir, default: str) -> None:
    """Append the ranks' output to each rank's log until the stream ends. torchrun's tee writes each piece a rank
    printed (a line, or a part of one) behind a `[defaultN]:` marker, so a marker routes what follows it to rankN.log
    up to the next marker; text before any marker is `default`'s."""
    files: dict[str, BinaryIO] = {}

    def write(replica: str, text: bytes) -> None:
        if text:
            if replica not in files:
                files[replica] = run.log(replica).open("ab")
            files[replica].write(text)
            files[replica].flush()

    try:
        for line in iter(stream.readline, b""):
            position, replica = 0, default
            for marker in RANK_MARKER.finditer(line):
                write(replica, line[position:marker.start()])
                position, replica = marker.end(), f"rank{int(marker[1])}"
            write(replica, line[position:])
    finally:
        for file in files.values():
            file.close()


def child_groups(pid: int) -> list[int]:
    """Children of pid that lead a process group of their own (torchrun's ranks), from /proc."""
    groups = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                if os.getpgid(child) == child:
                    groups.append(child)
            except ProcessLookupError:
                pass
    return sorted(set(groups))


def _stop(processes: list[subprocess.Popen], rank_groups: list[int]) -> None:
    """SIGTERM every process still running (torchrun passes it on to its ranks), SIGKILL those left after the grace
    period, and the ranks' own process groups with them."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    kill_groups(rank_groups, signal.SIGKILL)


class Supervisor:
    """Runs one local run from its record to its result."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.record: RunRecord = run.read_record()
        self.torchrun = is_torchrun(self.record.command)
        self.signalled = False
        self.sorter: threading.Thread | None = None
        self.rank_groups: list[int] = []

    def cancelled(self) -> bool:
        """True once a cancel was asked for (marker file) or the supervisor was signalled."""
        return self.signalled or self.run.cancel_marker.exists()

    def _on_signal(self, signum: int, frame: object) -> None:
        """SIGTERM / SIGINT: stop the run as cancelled."""
        self.signalled = True

    def _wait_healthy(self, rollout: subprocess.Popen) -> Outcome | None:
        """Wait for the rollout server's /health; an Outcome when it died, timed out or the run was cancelled."""
        spec = self.record.spec.rollout
        deadline = time.monotonic() + (spec.startup_seconds if spec else 0)
        while time.monotonic() < deadline:
            if self.cancelled():
                return Outcome(Phase.CANCELLED, "cancelled")
            if rollout.poll() is not None:
                return Outcome(Phase.FAILED, "rollout server exited while starting", "rollout", rollout.returncode)
            try:
                with urllib.request.urlopen(f"{self.record.rollout_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        return Outcome(Phase.FAILED, "rollout server not healthy in time", "rollout")

    def _watch(self, ranks: subprocess.Popen, rollout: subprocess.Popen | None) -> Outcome:
        """Poll until the ranks succeeded or failed, the rollout server died or the run was cancelled; keeps the
        ranks' process groups in rank-groups meanwhile."""
        while True:
            if self.cancelled():
                return Outcome(Phase.CANCELLED, "cancelled")
            if self.torchrun and (groups := child_groups(ranks.pid)) and not set(groups) <= set(self.rank_groups):
                self.rank_groups = sorted(set(self.rank_groups) | set(groups))
                self.run.rank_groups_file.write_text(" ".join(map(str, self.rank_groups)))
            code = ranks.poll()
            if code == 0:
                return Outcome(Phase.SUCCEEDED, exit_code=0)
            if code is not None:
                return self._failure(code)
            if rollout is not None and rollout.poll() is not None:
                return Outcome(Phase.FAILED, f"rollout server exited with {rollout.returncode}", "rollout",
                               rollout.returncode)
            time.sleep(POLL_S)

    def _failure(self, code: int) -> Outcome:
        """Which rank failed first and its exit code: torchrun's root cause, or the one process's own exit code."""
        if self.sorter is not None:
            self.sorter.join(timeout=STOP_GRACE_S)
        if not self.torchrun:
            return Outcome(Phase.FAILED, f"rank 0 exited with {code}", "rank0", code)
        log = self.run.log("torchrun")
        cause = ROOT_CAUSE.search(log.read_text(errors="replace")) if log.is_file() else None
        if cause is None:
            return Outcome(Phase.FAILED, f"torchrun exited with {code}", "torchrun", code)
        rank, exit_code = int(cause[1]), int(cause[2])
        return Outcome(Phase.FAILED, f"rank {rank} exited with {exit_code}", f"rank{rank}", exit_code)

    def _copy_logs(self) -> str:
        """Copy every log to the run's log URI; a note of what went wrong, empty when all went well."""
        if not self.record.log_uri:
            return ""
        from simplear.store import Store, StoreError, join

        try:
            store = Store()
            for log in self.run.logs():
                store.upload_file(log, join(self.record.log_uri, self.run.name, log.name))
        except (StoreError, OSError) as exc:
            return f"logs not copied to {self.record.log_uri}: {exc}"
        return ""

    def _run(self, env: dict[str, str], processes: list[subprocess.Popen]) -> Outcome:
        """Start the rollout server (if any), then the ranks (torchrun, or the one process of a stage that runs one),
        appending each to processes; how they ended."""
        if self.cancelled():
            return Outcome(Phase.CANCELLED, "cancelled before it started")
        rollout = None
        if self.record.rollout_command:
            rollout = _start(self.record.rollout_command, self.run.log("rollout"), env)
            processes.append(rollout)
            not_ready = self._wait_healthy(rollout)
            if not_ready is not None:
                return not_ready
        for rank in range(self.record.procs):
            self.run.log(f"rank{rank}").touch()
        ranks = subprocess.Popen(self.record.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env={**env, "PYTHONUNBUFFERED": "1"})
        processes.insert(0, ranks)
        self.sorter = threading.Thread(target=sort_lines, name="sort-rank-lines", daemon=True,
                                       args=(ranks.stdout, self.run, "torchrun" if self.torchrun else "rank0"))
        self.sorter.start()
        return self._watch(ranks, rollout)

    def supervise(self) -> int:
        """Run the ranks, copy the logs, record the result; the exit status mirrors the run's."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        started = datetime.now(UTC)
        processes: list[subprocess.Popen] = []
        try:
            outcome = self._run({**os.environ, **self.record.spec.env}, processes)
        except OSError as exc:
            outcome = Outcome(Phase.FAILED, f"could not start the run: {exc}")
        finally:
            _stop(processes, self.rank_groups)
            if self.sorter is not None:
                self.sorter.join(timeout=STOP_GRACE_S)
        note = self._copy_logs()
        message = "; ".join(part for part in (outcome.message, note) if part)
        self.run.write_result(RunResult(phase=outcome.phase, message=message, failed_replica=outcome.failed_replica,
                                        exit_code=outcome.exit_code, started=started,
                                        finished=datetime.now(UTC)))
        return 0 if outcome.phase == Phase.SUCCEEDED else 1


def main(argv: list[str] | None = None) -> int:
    """Supervise the run whose folder is the one argument."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m simplear.platform.local_supervisor RUN_DIR", file=sys.stderr)
        return 2
    return Supervisor(RunDir(Path(argv[0]))).supervise()


if __name__ == "__main__":
    sys.exit(main())

"""The process behind one local run: starts its ranks (and rollout server), watches them, records how it ended.

Run as `python -m simplear.platform.local_supervisor RUN_DIR` in a new process group; every process it starts
stays in that group, so cancel signals the whole run at once. Ranks get the variables torchrun sets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from simplear.child_server import free_port
from simplear.platform.launcher import Phase
from simplear.platform.local_runs import RunDir, RunRecord, RunResult

POLL_S = 0.1
STOP_GRACE_S = 10.0


@dataclass
class Outcome:
    """How the ranks ended."""

    phase: Phase
    message: str = ""
    failed_replica: str | None = None
    exit_code: int | None = None


def rank_env(base: dict[str, str], rank: int, world: int, master_port: int, run: str) -> dict[str, str]:
    """The environment torchrun gives local rank `rank` of `world` on one node."""
    env = dict(base)
    env.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
        GROUP_RANK="0", GROUP_WORLD_SIZE="1", ROLE_RANK=str(rank), ROLE_WORLD_SIZE=str(world), ROLE_NAME="default",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(master_port),
        TORCHELASTIC_RUN_ID=run, TORCHELASTIC_RESTART_COUNT="0", TORCHELASTIC_MAX_RESTARTS="0",
    )
    if world > 1:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start one process of the run, its output to its log file."""
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM every process still running, SIGKILL those left after the grace period."""
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


class Supervisor:
    """Runs one local run from its record to its result."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.record: RunRecord = run.read_record()
        self.signalled = False

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

    def _watch(self, ranks: list[subprocess.Popen], rollout: subprocess.Popen | None) -> Outcome:
        """Poll until every rank succeeded, one failed, the rollout server died or the run was cancelled."""
        while True:
            if self.cancelled():
                return Outcome(Phase.CANCELLED, "cancelled")
            codes = [rank.poll() for rank in ranks]
            for index, code in enumerate(codes):
                if code not in (None, 0):
                    return Outcome(Phase.FAILED, f"rank {index} exited with {code}", f"rank{index}", code)
            if all(code == 0 for code in codes):
                return Outcome(Phase.SUCCEEDED, exit_code=0)
            if rollout is not None and rollout.poll() is not None:
                return Outcome(Phase.FAILED, f"rollout server exited with {rollout.returncode}", "rollout",
                               rollout.returncode)
            time.sleep(POLL_S)

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
        """Start the rollout server (if any) and the ranks, appending each to processes; how they ended."""
        if self.cancelled():
            return Outcome(Phase.CANCELLED, "cancelled before it started")
        rollout = None
        if self.record.rollout_command:
            rollout = _start(self.record.rollout_command, self.run.log("rollout"), env)
            processes.append(rollout)
            not_ready = self._wait_healthy(rollout)
            if not_ready is not None:
                return not_ready
        port = free_port()
        ranks = [_start(self.record.command, self.run.log(f"rank{rank}"),
                        rank_env(env, rank, self.record.procs, port, self.record.name))
                 for rank in range(self.record.procs)]
        processes[:0] = ranks
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
            _stop(processes)
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

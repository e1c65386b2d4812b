"""LocalLauncher: stage runs as local processes (ranks under torchrun), each run kept in its own folder under a runs
dir; a model served by `simplear serve` on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from simplear.child_server import free_port
from simplear.platform.launcher import Deployment, Phase, RunHandle, RunStatus, StageFailed
from simplear.platform.local_process import cancel_run, follow_lines, local_status, tail_lines
from simplear.platform.local_runs import RunDir, RunRecord, default_runs_dir
from simplear.platform.stage_spec import StageSpec
from simplear.platform.stages import checked_stage, rollout_arguments, stage_arguments

SIMPLEAR = [sys.executable, "-m", "simplear.cli"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
DEFAULT_MODEL_NAME = "simplear"


class LocalLauncher:
    """Runs stages on this machine; `simplear jobs` finds the runs again in runs_dir after this object is gone."""

    def __init__(self, runs_dir: Path | None = None, log_uri: str | None = None,
                 env: Mapping[str, str] | None = None, poll_s: float = 0.2, grace_s: float = 10.0) -> None:
        self.runs_dir = runs_dir or default_runs_dir()
        self.log_uri = log_uri
        self.env = dict(os.environ if env is None else env)
        self.poll_s, self.grace_s = poll_s, grace_s
        self._children: dict[str, subprocess.Popen] = {}

    def _run_dir(self, handle: RunHandle) -> RunDir:
        """The folder of a run this launcher (or another on the same runs dir) started."""
        if handle.backend != "local":
            raise ValueError(f"run {handle.name} is a {handle.backend} run, not a local one")
        return RunDir(self.runs_dir / handle.name)

    def _record(self, stage: str, spec: StageSpec) -> RunRecord:
        """The record of a new run: its command (a distributed stage's: torchrun over its ranks, as in its PyTorchJob's
        container) and, for GRPO, the rollout server beside it."""
        kind = checked_stage(stage, spec)
        if spec.nodes != 1:
            raise ValueError(f"a local run uses this one machine: nodes must be 1, not {spec.nodes}")
        rollout_command = rollout_url = None
        if spec.rollout is not None:
            port = free_port()
            rollout_url = f"http://127.0.0.1:{port}"
            rollout_command = [*SIMPLEAR, "rollout-server", "--engine", spec.rollout.engine, "--model",
                               spec.rollout.model, "--host", "127.0.0.1", "--port", str(port), *spec.rollout.args]
        procs = spec.procs_per_node or 1
        arguments = stage_arguments(stage, spec, rollout_arguments(rollout_url, spec, "127.0.0.1")
                                    if rollout_url else None)
        command = [*SIMPLEAR, *arguments]
        if kind.distributed:
            command = [*TORCHRUN, "--nnodes=1", f"--nproc-per-node={procs}", "--node-rank=0",
                       "--master-addr=127.0.0.1", f"--master-port={free_port()}", "--tee=3",
                       f"--log-dir={self.runs_dir / spec.name / 'torchrun'}", "-m", "simplear.cli", *arguments]
        return RunRecord(
            name=spec.name, stage=stage, spec=spec, procs=procs, command=command,
            rollout_command=rollout_command, rollout_url=rollout_url, log_uri=self.log_uri,
            created=datetime.now(UTC),
        )

    def run(self, stage: str, spec: StageSpec) -> RunHandle:
        """Record the run and start its supervisor in a new process group; returns at once."""
        record = self._record(stage, spec)
        run = RunDir(self.runs_dir / spec.name)
        run.create(record)
        with run.log("supervisor").open("ab") as out:
            supervisor = subprocess.Popen(
                [sys.executable, "-m", "simplear.platform.local_supervisor", str(run.path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                start_new_session=True,
            )
        self._children[spec.name] = supervisor
        run.write_record(record.model_copy(update={"pid": supervisor.pid}))
        return RunHandle(stage=stage, name=spec.name, backend="local")

    def _reap(self) -> None:
        """Collect the exit status of supervisors this launcher started, so none lingers as a zombie."""
        for name, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[name]

    def status(self, handle: RunHandle) -> RunStatus:
        """The run's status from its result, or from whether its supervisor still runs."""
        self._reap()
        return local_status(self._run_dir(handle))

    def logs(self, handle: RunHandle, follow: bool = False) -> Iterator[str]:
        """Lines of rank 0's log; with follow, as they are written, until the run ends."""
        run = self._run_dir(handle)
        if not follow:
            path = run.log("rank0")
            return iter(path.read_text(errors="replace").splitlines() if path.is_file() else [])
        return follow_lines(run.log("rank0"), lambda: self.status(handle).phase.finished, self.poll_s)

    def wait(self, handle: RunHandle, timeout: float) -> RunStatus:
        """Block until the run ends: its status on success, StageFailed (with the failing log's tail) otherwise."""
        deadline = time.monotonic() + timeout
        while not (status := self.status(handle)).phase.finished:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"stage {handle.stage} run {handle.name} still {status.phase.value} "
                                   f"after {timeout:g} s")
            time.sleep(self.poll_s)
        if status.phase != Phase.SUCCEEDED:
            replica = status.failed_replica or "rank0"
            raise StageFailed(handle, status, tail_lines(self._run_dir(handle).log(replica)))
        return status

    def cancel(self, handle: RunHandle) -> None:
        """SIGTERM the run's process group (SIGKILL after the grace period) and record it as cancelled."""
        self._reap()
        cancel_run(self._run_dir(handle), self.grace_s)
        self._reap()

    def deploy(self, name: str, storage_uri: str, timeout: float, labels: dict[str, str] | None = None
               ) -> Deployment:
        """`simplear serve` of storage_uri on 127.0.0.1 and a free port, serving under name (empty: simplear); returns
        once KServe reports the model ready (RuntimeError with the server's log tail if it exits or takes over timeout
        s). The server stops when the deployment's `with` block ends; labels name nothing here."""
        from simplear.serve.process import ServerProcess

        server = ServerProcess(["--model-dir", storage_uri], model_name=name or DEFAULT_MODEL_NAME,
                               startup_timeout_s=timeout)
        try:
            server.__enter__()
        except BaseException:
            server.__exit__(None, None, None)
            raise
        return Deployment(server.model_name, server.url, storage_uri,
                          stop=lambda: server.__exit__(None, None, None))

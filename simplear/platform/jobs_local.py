"""`simplear jobs` on this machine: list, describe, show the logs of and cancel the runs under a runs directory."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from simplear.platform.jobs_tables import age, status_text, table
from simplear.platform.local_process import cancel_run, follow_lines, local_status, tail_lines
from simplear.platform.local_runs import RunDir, list_runs
from simplear.platform.run_progress import LOG_TAIL_LINES, progress_of

LOCAL_HEADERS = ["name", "stage", "status", "ranks", "age", "duration"]


def _duration(started: datetime | None, finished: datetime | None, now: datetime) -> str:
    """How long a run ran (so far)."""
    return age(started, finished or now) if started else "-"


def list_local(runs_dir: Path, out: TextIO, now: datetime | None = None) -> None:
    """A table of every run under runs_dir, oldest first."""
    now = now or datetime.now(UTC)
    rows = []
    for run in list_runs(runs_dir):
        record, status = run.read_record(), local_status(run)
        rows.append([run.name, record.stage, status_text(status), str(record.procs), age(record.created, now),
                     _duration(status.started, status.finished, now)])
    if not rows:
        print(f"No runs in {runs_dir}.", file=out)
        return
    print(table(LOCAL_HEADERS, rows), file=out)


def _run(runs_dir: Path, name: str) -> RunDir:
    """The run called name; ValueError when there is none."""
    run = RunDir(runs_dir / name)
    run.read_record()
    return run


def describe_local(runs_dir: Path, name: str, out: TextIO) -> None:
    """Everything known about one run, and the last lines of its failing (else rank 0's) log."""
    run = _run(runs_dir, name)
    record, status = run.read_record(), local_status(run)
    fields = [
        ("Name", record.name), ("Stage", record.stage), ("Status", status.phase.value),
        ("Message", status.message), ("Failed replica", status.failed_replica or ""),
        ("Exit code", "" if status.exit_code is None else str(status.exit_code)),
        ("Ranks", str(record.procs)), ("Created", record.created.isoformat()),
        ("Started", status.started.isoformat() if status.started else ""),
        ("Finished", status.finished.isoformat() if status.finished else ""),
        ("Command", shlex.join(record.command)),
        ("Rollout", shlex.join(record.rollout_command) if record.rollout_command else ""),
        ("Supervisor pid", "" if record.pid is None else str(record.pid)),
        ("Run folder", str(run.path)), ("Log URI", record.log_uri or ""),
        ("Progress", progress_of(tail_lines(run.log("rank0"), LOG_TAIL_LINES)).describe()),
    ]
    width = max(len(key) for key, _ in fields) + 2
    for key, value in fields:
        if value:
            print(f"{key + ':':<{width}}{value}", file=out)
    replica = status.failed_replica or "rank0"
    print(f"Last lines of {replica}:", file=out)
    for line in tail_lines(run.log(replica)):
        print(f"  {line}", file=out)


def logs_local(runs_dir: Path, name: str, replica: str, follow: bool, out: TextIO) -> None:
    """One replica's log; with follow, printed as it grows until the run ends."""
    run = _run(runs_dir, name)
    path = run.log(replica)
    if not follow:
        if not path.is_file():
            available = ", ".join(p.stem for p in run.logs()) or "none yet"
            raise ValueError(f"run {name} has no {replica} log; logs: {available}")
        out.write(path.read_text(errors="replace"))
        return
    for line in follow_lines(path, lambda: local_status(run).phase.finished):
        print(line, file=out, flush=True)


def cancel_local(runs_dir: Path, name: str, out: TextIO, grace_s: float = 10.0) -> None:
    """Cancel a run (a no-op on a finished one) and say how it ended."""
    run = _run(runs_dir, name)
    before = local_status(run)
    if before.phase.finished:
        print(f"run {name} already finished: {before.phase.value}", file=out)
        return
    cancel_run(run, grace_s)
    print(f"run {name} {local_status(run).phase.value.lower()}", file=out)

"""Local runs on disk: one folder per run under a runs directory, with its record, result and replica logs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from simplear.platform.launcher import Phase
from simplear.platform.stage_spec import StageSpec

RUNS_DIR_VARIABLE = "SIMPLEAR_RUNS_DIR"


class RunRecord(BaseModel):
    """How a local run was started: written before it starts; the supervisor's pid added once it runs."""

    model_config = ConfigDict(extra="forbid")

    name: str
    stage: str
    spec: StageSpec
    procs: int
    command: list[str]
    rollout_command: list[str] | None = None
    rollout_url: str | None = None
    log_uri: str | None = None
    created: datetime
    pid: int | None = None


class RunResult(BaseModel):
    """How a local run ended, written once by its supervisor (or by cancel when the supervisor is gone)."""

    model_config = ConfigDict(extra="forbid")

    phase: Phase
    message: str = ""
    failed_replica: str | None = None
    exit_code: int | None = None
    started: datetime | None = None
    finished: datetime


def default_runs_dir() -> Path:
    """$SIMPLEAR_RUNS_DIR, or ~/.simplear/runs."""
    return Path(os.environ.get(RUNS_DIR_VARIABLE) or Path.home() / ".simplear" / "runs")


def _write_atomically(path: Path, text: str) -> None:
    """Replace path with text in one step, so readers see the old file or the new one."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


@dataclass(frozen=True)
class RunDir:
    """The folder of one local run: run.json, result.json, a cancel marker, the ranks' process groups and
    <replica>.log files."""

    path: Path

    @property
    def name(self) -> str:
        """The run's name (its folder's)."""
        return self.path.name

    @property
    def cancel_marker(self) -> Path:
        """Exists once a cancel was asked for: the supervisor then reports Cancelled, not Failed."""
        return self.path / "cancel-requested"

    @property
    def rank_groups_file(self) -> Path:
        """The process groups of the run's ranks (torchrun starts each in a session of its own), space-separated."""
        return self.path / "rank-groups"

    def rank_groups(self) -> list[int]:
        """The process groups of the run's ranks, as its supervisor saw them start."""
        path = self.rank_groups_file
        return [int(group) for group in path.read_text().split()] if path.is_file() else []

    def log(self, replica: str) -> Path:
        """The log file of one replica: rank0, rank1, ..., torchrun, rollout, or supervisor."""
        return self.path / f"{replica}.log"

    def logs(self) -> list[Path]:
        """Every log file of the run."""
        return sorted(self.path.glob("*.log"))

    def create(self, record: RunRecord) -> None:
        """Make the folder and write the record; ValueError if a run of that name exists."""
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:
            raise ValueError(f"a run named {self.name} already exists in {self.path.parent}") from None
        self.write_record(record)

    def exists(self) -> bool:
        """True when the folder holds a run record."""
        return (self.path / "run.json").is_file()

    def read_record(self) -> RunRecord:
        """The run's record; ValueError naming the runs directory when there is no such run."""
        try:
            return RunRecord.model_validate_json((self.path / "run.json").read_text())
        except FileNotFoundError:
            raise ValueError(f"no run named {self.name} in {self.path.parent}") from None

    def write_record(self, record: RunRecord) -> None:
        """Write the record atomically."""
        _write_atomically(self.path / "run.json", record.model_dump_json(indent=2))

    def read_result(self) -> RunResult | None:
        """How the run ended, or None while it has not."""
        path = self.path / "result.json"
        return RunResult.model_validate_json(path.read_text()) if path.is_file() else None

    def write_result(self, result: RunResult) -> None:
        """Write the result atomically."""
        _write_atomically(self.path / "result.json", result.model_dump_json(indent=2))


def list_runs(runs_dir: Path) -> list[RunDir]:
    """Every run under runs_dir, oldest first."""
    if not runs_dir.is_dir():
        return []
    runs = [RunDir(path) for path in runs_dir.iterdir() if RunDir(path).exists()]
    return sorted(runs, key=lambda run: (run.read_record().created, run.name))

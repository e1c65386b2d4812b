"""The Launcher seam: start a stage run, follow it, wait for it, cancel it, serve a model — on one machine or on
Kubernetes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from simplear.platform.stage_spec import StageSpec


class Phase(StrEnum):
    """Where a run is in its life."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        """True once the run can no longer change."""
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


@dataclass(frozen=True)
class RunHandle:
    """What names one run: its stage and name, where it runs and (on Kubernetes) its namespace."""

    stage: str
    name: str
    backend: Literal["local", "kubernetes"]
    namespace: str | None = None


@dataclass(frozen=True)
class RunStatus:
    """A run's phase, why it is there, and (once failed) which replica failed first and how."""

    phase: Phase
    message: str = ""
    failed_replica: str | None = None
    exit_code: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    reason: str = ""


class StageFailed(RuntimeError):
    """A stage run ended without success; carries its status and the failing replica's last log lines."""

    def __init__(self, handle: RunHandle, status: RunStatus, tail: list[str]) -> None:
        self.handle, self.status, self.tail = handle, status, tail
        how = ", ".join(part for part in (
            f"exit code {status.exit_code}" if status.exit_code is not None else "", status.reason) if part)
        replica = f" (replica {status.failed_replica}{', ' + how if how else ''})" if status.failed_replica else ""
        head = f"stage {handle.stage} run {handle.name} {status.phase.value}{replica}"
        if status.message:
            head += f": {status.message}"
        body = "".join(f"\n  | {line}" for line in tail) if tail else "\n  (no log lines)"
        super().__init__(f"{head}\nlast log lines:{body}")


@dataclass
class Deployment:
    """A model being served: the name in its routes, the base URL of its REST API (as reached from where the
    launcher runs), the checkpoint, and the URL the serving layer reports, if any. Use it in `with`: at the end a
    server that lives only as long as its caller (the local one) stops; an InferenceService stays."""

    name: str
    url: str
    storage_uri: str
    reported_url: str = ""
    stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def __enter__(self) -> Deployment:
        """The deployment itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop what lives only as long as the caller."""
        self.stop()


@runtime_checkable
class Launcher(Protocol):
    """Starts stage runs and follows them; LocalLauncher and KubernetesLauncher implement it."""

    def run(self, stage: str, spec: StageSpec) -> RunHandle:
        """Start one run of `stage` as `spec` describes; returns at once."""

    def status(self, handle: RunHandle) -> RunStatus:
        """The run's current status."""

    def logs(self, handle: RunHandle, follow: bool = False) -> Iterator[str]:
        """Lines of the run's master (rank 0) log; with follow, until the run ends."""

    def wait(self, handle: RunHandle, timeout: float) -> RunStatus:
        """Block until the run succeeds (its status), fails (StageFailed) or timeout seconds pass (TimeoutError)."""

    def cancel(self, handle: RunHandle) -> None:
        """Stop the run and free what it holds."""

    def deploy(self, name: str, storage_uri: str, timeout: float, labels: dict[str, str] | None = None
               ) -> Deployment:
        """Serve storage_uri under `name` (empty: the backend's default) and return once requests reach it."""

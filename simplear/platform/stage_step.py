"""One stage run as a pipeline step sees it: start it, echo its log, wait for it, and cancel it only when the step
itself is stopped (SIGTERM, Ctrl-C) or runs out of time.

Cancelling a Kubeflow Pipelines run deletes the step's pod; the kubelet sends SIGTERM to the container and Argo's
emissary executor forwards it to the step's process (argo-workflows cmd/argoexec/commands/emissary.go). Nothing
else would delete the PyTorchJob, so SIGTERM becomes StepCancelled here and the run is deleted before the step exits.
The log is followed in a thread: a lost log stream is reported and never cancels the run.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from simplear.platform.launcher import Launcher, RunStatus, StageFailed
from simplear.platform.stage_spec import StageSpec

LOG_DRAIN_S = 60


class StepCancelled(BaseException):
    """The step was told to stop (SIGTERM); like KeyboardInterrupt, no `except Exception` swallows it."""


@contextmanager
def sigterm_cancels() -> Iterator[dict[str, bool]]:
    """Within the block SIGTERM raises StepCancelled, except while `guard["starting"]` is set: then it is held back
    (`guard["stopped"]`) so a half-created run is cancelled with its handle. Outside the main thread: no handler."""
    guard = {"starting": False, "stopped": False}
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return

    def on_sigterm(signum: int, _frame: object) -> None:
        guard["stopped"] = True
        if not guard["starting"]:
            raise StepCancelled(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGTERM, previous)


def _echo_log(launcher: Launcher, handle: object, echo: Callable[[str], None]) -> None:
    """Print the run's rank-0 log as it comes; a failure here is reported, the run goes on."""
    try:
        for line in launcher.logs(handle, follow=True):
            echo(f"  {handle.name} | {line}")
    except Exception as exc:
        echo(f"{handle.name}: following the log failed ({type(exc).__name__}: {exc}); waiting for the run to end")


def run_stage_step(launcher: Launcher, stage: str, spec: StageSpec, timeout_s: float,
                   echo: Callable[[str], None] = print) -> RunStatus:
    """Start the run, echo its log, wait up to timeout_s; StageFailed as the launcher reports it. The run is cancelled
    on SIGTERM, Ctrl-C, timeout or an error while waiting, never because its log could not be read."""
    with sigterm_cancels() as guard:
        guard["starting"] = True
        handle = launcher.run(stage, spec)
        guard["starting"] = False
        try:
            if guard["stopped"]:
                raise StepCancelled("received SIGTERM while the run was being created")
            echo(f"{stage} run {spec.name} started")
            follower = threading.Thread(target=_echo_log, args=(launcher, handle, echo), daemon=True)
            follower.start()
            status = launcher.wait(handle, timeout_s)
            follower.join(LOG_DRAIN_S)
            return status
        except StageFailed:
            raise
        except BaseException as stop:
            echo(f"{spec.name}: cancelling the run ({type(stop).__name__}: {stop})")
            try:
                launcher.cancel(handle)
            except Exception as exc:
                echo(f"{spec.name}: cancelling failed: {type(exc).__name__}: {exc}")
            else:
                echo(f"{spec.name}: cancelled")
            raise

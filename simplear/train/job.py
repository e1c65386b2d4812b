"""One rank of a training job: its place in torchrun, the few collectives, its work directory, precision, result."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from simplear.config import GRPOTrainConfig, TrainConfig
from simplear.store import canonical

T = TypeVar("T")
RunConfig = TrainConfig | GRPOTrainConfig

FINAL_DIR = "final"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    final: str
    steps: int
    resumed_from: str | None


def rank() -> int:
    """Global rank of this process (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes in the job (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def single_process_launch_env() -> dict[str, str]:
    """The variables torchrun would set for one process, with a free local port for the rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port)}


def ensure_launch_env() -> None:
    """Give a plain single-process run the variables torchrun would set, so DeepSpeed can start."""
    if "RANK" not in os.environ:
        os.environ.update(single_process_launch_env())


def _active() -> bool:
    """True in a job of several ranks, whose process group must be up by now."""
    if world_size() == 1:
        return False
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"rank {rank()} of {world_size()}: torch.distributed is not initialized yet")
    return True


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if _active():
        dist.barrier()


def all_gather(value: T) -> list[T]:
    """Every rank's value, in rank order."""
    if not _active():
        return [value]
    gathered: list[T] = [value] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_from_rank0(value: T) -> T:
    """Rank 0's value, on every rank."""
    if not _active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def uses_bf16(config: RunConfig) -> bool:
    """True when the run trains in bf16: asked for, or `auto` with a GPU."""
    return config.precision == "bf16" or (config.precision == "auto" and torch.cuda.is_available())


def rank_workdir(config: RunConfig) -> Path:
    """This rank's local directory for the run, emptied: nothing in it outlives the store copies."""
    run_id = hashlib.sha1(canonical(config.output).encode()).hexdigest()[:12]
    base = Path(config.scratch) if config.scratch else Path(tempfile.gettempdir()) / "simplear-train"
    workdir = base / run_id / f"rank-{rank()}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return workdir

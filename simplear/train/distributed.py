"""This process's place in a torchrun job and the few collectives the training job needs."""

from __future__ import annotations

import os
import socket
from typing import TypeVar

import torch.distributed as dist

T = TypeVar("T")


def rank() -> int:
    """Global rank of this process (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes in the job (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def ensure_launch_env() -> None:
    """Give a plain single-process run the variables torchrun would set, so DeepSpeed can start."""
    if "RANK" in os.environ:
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )


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

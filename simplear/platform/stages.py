"""What each stage runs: its `simplear` subcommand, node pool, container image and whether it runs ranks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from simplear.platform.config import PoolName
from simplear.platform.stage_spec import StageName, StageSpec

ImageRole = Literal["base", "train", "rollout", "serve"]


@dataclass(frozen=True)
class StageKind:
    """How one stage runs: subcommand, pool, image role, and whether it runs one rank per device."""

    command: tuple[str, ...]
    pool: PoolName
    image: ImageRole
    distributed: bool


STAGES: dict[str, StageKind] = {
    "shapes": StageKind(("shapes",), "cpu", "base", distributed=False),
    "tokenize": StageKind(("tokenize",), "tokenize", "train", distributed=True),
    "pretrain": StageKind(("train", "--stage", "pretrain"), "train", "train", distributed=True),
    "sft": StageKind(("train", "--stage", "sft"), "train", "train", distributed=True),
    "grpo": StageKind(("train", "--stage", "grpo"), "train", "train", distributed=True),
    "evaluate": StageKind(("evaluate",), "serve", "train", distributed=True),
}


def stage_kind(stage: str) -> StageKind:
    """The stage called `stage`, or a clear error listing the known ones."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join(STAGES)}")
    return STAGES[stage]


def checked_stage(stage: StageName | str, spec: StageSpec) -> StageKind:
    """The stage's kind after checking that `spec` fits it; ValueError otherwise."""
    kind = stage_kind(stage)
    spec.check(stage, kind.distributed)
    return kind


def rollout_arguments(url: str, spec: StageSpec, sync_host: str) -> list[str]:
    """The trainer's flags for its rollout server: address, weight sync and the NCCL rendezvous trainer rank 0 opens
    on `sync_host` (an address of its own pod the server can reach)."""
    rollout = spec.rollout
    if rollout is None:
        raise ValueError(f"run {spec.name} has no rollout server: set StageSpec.rollout")
    return ["--rollout", "http", "--rollout-url", url, "--rollout-weight-sync", rollout.weight_sync,
            "--rollout-sync-host", sync_host, "--rollout-sync-port", str(rollout.weight_sync_port)]


def stage_arguments(stage: str, spec: StageSpec, rollout: list[str] | None = None) -> list[str]:
    """`simplear` arguments of one rank: subcommand, the spec's flags and, with a rollout server, rollout_arguments."""
    return [*stage_kind(stage).command, *spec.args, *(rollout or [])]

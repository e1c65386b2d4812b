"""Typed spec of one stage run: its name, arguments, size, run policy and (GRPO) rollout server."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from simplear.config import Strict

StageName = Literal["shapes", "tokenize", "pretrain", "sft", "grpo", "evaluate"]
# A label key (optional DNS-subdomain prefix, then a name) and value, as the API server validates them.
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
RUN_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# Inline credentials are refused: pods read them from the store Secret, local runs from the environment.
CREDENTIAL_VARIABLES = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"})


class RolloutSpec(Strict):
    """GRPO's rollout server: engine, initial policy, where it runs, ports and how new weights reach it."""

    model: str = Field(description="initial policy (the trainer's --init-from): checkpoint directory or store URI")
    engine: Literal["vllm", "torch"] = "vllm"
    placement: Literal["sidecar", "pool"] | None = Field(
        default=None, description="sidecar: in the trainer's master pod (localhost); pool: a Deployment on the "
        "rollout pool; None: the platform's rollout_placement"
    )
    port: int = Field(default=8000, gt=0, lt=65536, description="HTTP port: /generate, /weights, /health")
    weight_sync_port: int = Field(
        default=51216, gt=0, lt=65536, description="NCCL rendezvous port, opened by trainer rank 0 (vLLM's TCPStore)"
    )
    weight_sync: Literal["auto", "nccl", "store"] = Field(
        default="auto", description="auto: NCCL after each step when both ends have GPUs, else the store reload"
    )
    args: tuple[str, ...] = Field(default=(), description="further `simplear rollout-server` flags")
    startup_seconds: int = Field(default=900, gt=0, description="how long loading the policy may take")

    @model_validator(mode="after")
    def _distinct_ports(self) -> RolloutSpec:
        if self.port == self.weight_sync_port:
            raise ValueError(f"rollout port and weight_sync_port are both {self.port}")
        return self


class StageSpec(Strict):
    """One run of a stage: the `simplear` flags it gets, its nodes and processes, and its run policy."""

    name: str = Field(max_length=40, pattern=RUN_NAME_PATTERN, description="run name: PyTorchJob or local run")
    args: tuple[str, ...] = Field(default=(), description="flags after the stage's `simplear` subcommand")
    nodes: int = Field(default=1, ge=1, le=256, description="pods (Master + Workers); one machine locally")
    procs_per_node: int | None = Field(default=None, ge=1, description="ranks per pod; None = the pool's GPUs, or 1")
    env: dict[str, str] = Field(default={}, description="extra environment of every rank (no credentials)")
    restart_policy: Literal["ExitCode", "OnFailure", "Never"] = Field(
        default="ExitCode", description="ExitCode: retry preemptions and kills (exit >= 128), fail fast on errors"
    )
    backoff_limit: int = Field(default=3, ge=0, description="restarts before the job is Failed")
    clean_pod_policy: Literal["Running", "All", "None"] = Field(
        default="Running", description="Running: free the GPUs of still-running pods, keep failed pods for logs"
    )
    ttl_seconds_after_finished: int = Field(default=86_400, ge=0, description="finished jobs are deleted after this")
    active_deadline_seconds: int | None = Field(default=None, gt=0)
    shm_size: str = Field(default="16Gi", description="/dev/shm (memory) of each pod")
    scratch_size: str = Field(default="64Gi", description="/tmp of each pod: checkpoint staging, caches")
    rollout: RolloutSpec | None = Field(default=None, description="GRPO only: the rollout server beside the trainer")
    labels: dict[str, str] = Field(default={}, description="extra labels of the run's objects and pods (pipeline run)")

    @model_validator(mode="after")
    def _valid_labels(self) -> StageSpec:
        bad = [f"{key}={value}" for key, value in self.labels.items()
               if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value)]
        if bad:
            raise ValueError(f"labels not valid in Kubernetes: {', '.join(bad)}")
        return self

    @model_validator(mode="after")
    def _no_inline_credentials(self) -> StageSpec:
        inline = sorted(CREDENTIAL_VARIABLES & set(self.env))
        if inline:
            raise ValueError(f"env must not carry credentials ({', '.join(inline)}): they come from the store Secret")
        return self

    def check(self, stage: str, distributed: bool) -> None:
        """ValueError naming what this spec asks that the stage cannot do."""
        if not distributed and (self.nodes > 1 or (self.procs_per_node or 1) > 1):
            raise ValueError(f"stage {stage} runs one process: nodes and procs_per_node must be 1")
        if self.rollout is not None and stage != "grpo":
            raise ValueError(f"a rollout server is only for stage grpo, not {stage}")
        filled = {"--rollout", "--rollout-url", "--rollout-weight-sync", "--rollout-sync-host", "--rollout-sync-port"}
        if self.rollout is not None and filled & {a.split("=")[0] for a in self.args}:
            raise ValueError("args must not set --rollout / --rollout-url / --rollout-weight-sync / --rollout-sync-*: "
                             "the rollout server's address and weight sync are filled in")

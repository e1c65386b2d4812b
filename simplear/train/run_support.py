"""What every training stage's run shares: its local work directory, precision, resume point, metric logs, result."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from simplear.config import GRPOTrainConfig, TrainConfig
from simplear.store import Store, canonical, claim_settings, join
from simplear.train import distributed
from simplear.train.checkpoints import fetch_checkpoint, latest_checkpoint
from simplear.train.metrics_callback import MetricsSink
from simplear.train.metrics_jsonl import JsonlMetricsLog
from simplear.train.metrics_tensorboard import TensorBoardMetricsLog

RunConfig = TrainConfig | GRPOTrainConfig

FINAL_DIR = "final"
METRICS_LOG = "logs/train.jsonl"
TENSORBOARD_DIR = "tensorboard"
SETTINGS_FILE = "train.json"
MAY_CHANGE_ON_RESUME = frozenset({
    "output", "max_steps", "max_minutes", "save_steps", "logging_steps", "tensorboard", "scratch",
    "dataloader_workers", "gradient_checkpointing", "rollout", "rollout_url", "rollout_batch_size",
})
"""Fields a resumed run may change: how long and where it runs, how often it reports, not what it learns."""
URI_FIELDS = ("data", "init_from", "prompts")


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from: its step, store URI and this rank's local copy."""

    step: int
    uri: str
    local_dir: Path


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    final: str
    steps: int
    resumed_from: str | None


def uses_bf16(config: RunConfig) -> bool:
    """True when the run trains in bf16: asked for, or `auto` with a GPU."""
    return config.precision == "bf16" or (config.precision == "auto" and torch.cuda.is_available())


def rank_workdir(config: RunConfig) -> Path:
    """This rank's local directory for the run, emptied: nothing in it outlives the store copies."""
    run_id = hashlib.sha1(canonical(config.output).encode()).hexdigest()[:12]
    base = Path(config.scratch) if config.scratch else Path(tempfile.gettempdir()) / "simplear-train"
    workdir = base / run_id / f"rank-{distributed.rank()}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return workdir


def train_settings(config: RunConfig) -> dict:
    """What a run's checkpoints depend on (nested blocks flattened to `block.field`); a resume must match them."""
    settings: dict = {}
    for name, value in config.model_dump(mode="json", exclude=set(MAY_CHANGE_ON_RESUME)).items():
        if name in URI_FIELDS and value:
            value = canonical(value)
        if isinstance(value, dict):
            settings.update({f"{name}.{field}": inner for field, inner in value.items()})
        else:
            settings[name] = value
    return settings


def find_resume_point(store: Store, config: RunConfig, local_dir: Path) -> ResumePoint | None:
    """Check the run's settings, then rank 0 picks the newest complete checkpoint; every rank downloads it.

    None on a fresh run; SettingsChanged when the output holds a run of other settings.
    """
    claim_settings(store, config.output, SETTINGS_FILE, train_settings(config), "train", "--output")
    found = latest_checkpoint(store, config.output) if distributed.rank() == 0 else None
    latest = distributed.broadcast_from_rank0(found)
    if latest is None:
        return None
    step, uri = latest
    return ResumePoint(step, uri, fetch_checkpoint(store, uri, local_dir / uri.rstrip("/").rsplit("/", 1)[-1]))


def metric_sinks(store: Store, config: RunConfig, workdir: Path, resume_step: int) -> list[MetricsSink]:
    """Rank 0's metric logs (JSONL, and TensorBoard unless turned off); none on other ranks."""
    if distributed.rank() != 0:
        return []
    sinks: list[MetricsSink] = [JsonlMetricsLog(store, join(config.output, METRICS_LOG), resume_step)]
    if config.tensorboard:
        tb_uri = join(config.output, TENSORBOARD_DIR)
        sinks.append(TensorBoardMetricsLog(store, tb_uri, workdir / TENSORBOARD_DIR, resume_step))
    return sinks

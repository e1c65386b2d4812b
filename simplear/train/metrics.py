"""A run's metrics: rows of the Trainer's logs (loss, lr, tokens/s, step time), rank 0's JSONL and TensorBoard logs."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from simplear.store import ObjectNotFound, Store, join
from simplear.train import job

METRICS_LOG = "logs/train.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsSink(Protocol):
    """Somewhere metric rows go."""

    def write(self, row: dict) -> None:
        """Record one row."""
        ...

    def close(self) -> None:
        """Finish writing."""
        ...


class MetricsCallback(TrainerCallback):
    """On rank 0, one row per Trainer log: throughput measured since the previous log, checkpoint time excluded."""

    def __init__(self, sinks: list[MetricsSink]) -> None:
        self.sinks = sinks
        self._since = (0.0, 0, 0)

    def _mark(self, state: TrainerState) -> None:
        """Start a new throughput interval now."""
        self._since = (time.perf_counter(), state.global_step, state.num_input_tokens_seen)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        """Start measuring (after a resume, from the restored step and token count)."""
        self._mark(state)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object) -> None:
        """Leave checkpoint time out of the next interval."""
        self._mark(state)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **kwargs: object,
    ) -> None:
        """Write a row for a training-loss log (the end-of-run summary is not one)."""
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        started, step, tokens = self._since
        elapsed = time.perf_counter() - started
        steps = max(state.global_step - step, 1)
        row = {
            "step": state.global_step,
            "epoch": logs.get("epoch", state.epoch),
            "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "tokens_seen": state.num_input_tokens_seen,
            "tokens_per_second": (state.num_input_tokens_seen - tokens) / elapsed if elapsed > 0 else None,
            "step_time_s": elapsed / steps,
            "time": time.time(),
        }
        for sink in self.sinks:
            sink.write(row)
        self._mark(state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()


class StepTimes:
    """Accumulates seconds by kind (`rollout`, `reward`) until a metrics callback takes them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, kind: str, seconds: float) -> None:
        """Count `seconds` more of `kind`."""
        self.seconds[kind] += seconds

    def take(self) -> dict[str, float]:
        """The totals so far, starting again from zero."""
        totals, self.seconds = dict(self.seconds), defaultdict(float)
        return totals


class JsonlMetricsLog:
    """Rows of `<output>/logs/train.jsonl`; a resumed run keeps the rows up to its checkpoint and goes on from there."""

    def __init__(self, store: Store, uri: str, resume_step: int) -> None:
        self.store = store
        self.uri = uri
        self.lines = [line for line in self._existing() if json.loads(line)["step"] <= resume_step]

    def _existing(self) -> list[str]:
        """Lines already in the store (none for a fresh run)."""
        try:
            return self.store.read(self.uri).decode().splitlines()
        except ObjectNotFound:
            return []

    def write(self, row: dict) -> None:
        """Append one row and upload the file."""
        self.lines.append(json.dumps(row, sort_keys=True))
        self.store.write(self.uri, ("\n".join(self.lines) + "\n").encode())

    def close(self) -> None:
        """Nothing is buffered: every row is in the store once write returns."""


class TensorBoardMetricsLog:
    """Scalars under `train/`; a resumed run's file hides the earlier run's events from its first step on."""

    def __init__(self, store: Store, uri: str, local_dir: Path, resume_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise RuntimeError(
                "TensorBoard logging needs the tensorboard package (simplear[train]); or turn it off (--no-tensorboard)"
            ) from exc
        self.store = store
        self.uri = uri
        self.local_dir = local_dir
        self.writer = SummaryWriter(str(local_dir), purge_step=resume_step + 1 if resume_step else None)

    def write(self, row: dict) -> None:
        """Add every numeric field of the row but its step and wall time as a scalar, then upload the event file."""
        for name, value in row.items():
            if name not in ("step", "time") and isinstance(value, int | float):
                self.writer.add_scalar(f"train/{name}", value, row["step"])
        self._upload()

    def close(self) -> None:
        """Flush, close and upload the event file."""
        self.writer.close()
        self._upload()

    def _upload(self) -> None:
        """Copy the local event files to the store."""
        self.writer.flush()
        for path in sorted(self.local_dir.glob("events.out.tfevents.*")):
            self.store.upload_file(path, join(self.uri, path.name))


def metric_sinks(store: Store, config: job.RunConfig, workdir: Path, resume_step: int) -> list[MetricsSink]:
    """Rank 0's metric logs (JSONL, and TensorBoard unless turned off); none on other ranks."""
    if job.rank() != 0:
        return []
    sinks: list[MetricsSink] = [JsonlMetricsLog(store, join(config.output, METRICS_LOG), resume_step)]
    if config.tensorboard:
        tb_uri = join(config.output, TENSORBOARD_DIR)
        sinks.append(TensorBoardMetricsLog(store, tb_uri, workdir / TENSORBOARD_DIR, resume_step))
    return sinks

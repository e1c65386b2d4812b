"""Turns the Trainer's logs into metric rows (loss, learning rate, tokens/s, step time) for the run's logs."""

from __future__ import annotations

import time
from typing import Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


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

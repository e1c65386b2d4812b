"""One metrics row per logged GRPO step: each reward's mean and std, KL, clip fraction, rollout and train time."""

from __future__ import annotations

import time

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from simplear.train.grpo.rollout_function import RolloutFunction
from simplear.train.metrics import MetricsSink, StepTimes

TRL_KEYS: dict[str, str] = {
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "reward": "reward",
    "reward_std": "reward_std",
    "frac_reward_zero_std": "groups_with_zero_std",
    "kl": "kl",
    "entropy": "entropy",
    "clip_ratio/region_mean": "clip_fraction",
    "clip_ratio/low_mean": "clip_fraction_low",
    "clip_ratio/high_mean": "clip_fraction_high",
}
"""trl's log keys kept in a row, and the names they get there (`rewards/<name>/mean|std` are kept as they are)."""


def metrics_row(logs: dict, step: int) -> dict:
    """The row of one trl log: the kept keys renamed, and every reward's mean and std."""
    row: dict = {"step": step}
    row.update({name: logs[key] for key, name in TRL_KEYS.items() if logs.get(key) is not None})
    row.update({key: value for key, value in logs.items() if key.startswith("rewards/") and value is not None})
    return row


class GRPOMetricsCallback(TrainerCallback):
    """On rank 0, a row per trl log with the step's wall time split into rollout, reward and training seconds."""

    def __init__(self, sinks: list[MetricsSink], times: StepTimes, rollouts: RolloutFunction) -> None:
        self.sinks = sinks
        self.times = times
        self.rollouts = rollouts
        self._step_started = 0.0
        self._step_seconds = 0.0
        self._steps = 0

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        """Start timing an optimizer step (rollouts, rewards, forward, backward, optimizer)."""
        self._step_started = time.perf_counter()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        """Count the step's seconds; logging and checkpoints that follow are not part of it."""
        self._step_seconds += time.perf_counter() - self._step_started
        self._steps += 1

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict | None = None,
        **kwargs: object,
    ) -> None:
        """Write a row for a training log (the end-of-run summary is not one); times are per step since the last."""
        if not logs or "loss" not in logs:
            return
        spent, steps = self.times.take(), max(self._steps, 1)
        step_time = self._step_seconds / steps
        rollout, reward = spent.get("rollout", 0.0) / steps, spent.get("reward", 0.0) / steps
        self._step_seconds, self._steps = 0.0, 0
        if not state.is_world_process_zero:
            return
        row = metrics_row(logs, state.global_step)
        row.update(
            step_time_s=step_time,
            rollout_time_s=rollout,
            reward_time_s=reward,
            train_time_s=max(step_time - rollout - reward, 0.0),
            policy_version=self.rollouts.version,
            sampling_logprob=self.rollouts.last_logprob_mean,
            time=time.time(),
        )
        for sink in self.sinks:
            sink.write(row)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()

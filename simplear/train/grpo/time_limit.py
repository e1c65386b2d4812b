"""Stops a run, saving a checkpoint, once this process has trained for a given wall-clock time."""

from __future__ import annotations

import time

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class TimeLimitCallback(TrainerCallback):
    """After the first optimizer step that ends past `minutes` of training in this process, save and stop."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60.0
        self.started = 0.0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        """Start the clock (a resumed run gets its budget afresh)."""
        self.started = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> TrainerControl:
        """Stop after this step, with a checkpoint, when the time is up."""
        if time.monotonic() - self.started >= self.seconds:
            control.should_training_stop = True
            control.should_save = True
        return control

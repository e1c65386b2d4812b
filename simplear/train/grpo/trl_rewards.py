"""Our rewards as trl calls reward functions: trl passes columns and rollout fields as keyword arguments."""

from __future__ import annotations

import json
import time
from typing import Any

from simplear.train.grpo.prompt_source import METADATA_COLUMN
from simplear.train.grpo.rollout_function import IMAGES_FIELD
from simplear.train.grpo.step_times import StepTimes
from simplear.train.rewards import NamedReward


class TrlReward:
    """One registered reward behind trl's reward-function call; trl logs it under `__name__`, the reward's name."""

    def __init__(self, reward: NamedReward, times: StepTimes) -> None:
        self.reward = reward
        self.times = times
        self.__name__ = reward.name

    def __call__(self, prompts: list[str], completions: list[Any], **columns: Any) -> list[float]:
        """Score the decoded images against their captions and metadata (trl's text completions are not read)."""
        started = time.perf_counter()
        metadata = [json.loads(text) for text in columns[METADATA_COLUMN]]
        scores = self.reward.fn(list(prompts), list(columns[IMAGES_FIELD]), metadata)
        self.times.add("reward", time.perf_counter() - started)
        return scores

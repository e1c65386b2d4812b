"""What every reward shares: its call signature, the device it runs on, the store, models loaded once per run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from simplear.config import RewardSpec
from simplear.store import Store
from simplear.train.rewards.clip_loading import LoadedClip, load_clip

RewardFn = Callable[[list[str], list[Image.Image], list[dict[str, Any] | None]], list[float]]
"""Scores one image per prompt; metadata is each prompt's GenEval metadata, or None where its record has none."""


@dataclass
class RewardContext:
    """The device rewards run on, the store their checkpoints come from, and the CLIP models already loaded."""

    device: torch.device
    store: Store
    clips: dict[str, LoadedClip] = field(default_factory=dict)

    def clip(self, spec: RewardSpec) -> LoadedClip:
        """The CLIP model `spec.clip_model` names, loaded once per run however many rewards use it."""
        if not spec.clip_model:
            raise ValueError(f"reward {spec.name!r} needs clip_model: a CLIP directory or store URI")
        if spec.clip_model not in self.clips:
            self.clips[spec.clip_model] = load_clip(spec.clip_model, self.device, self.store)
        return self.clips[spec.clip_model]


RewardBuilder = Callable[[RewardSpec, RewardContext], RewardFn]

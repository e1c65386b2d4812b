"""The reward registry (as open-r1's): a name per builder of a plain callable `(prompts, images, metadata)`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from simplear.config import RewardSpec
from simplear.store import Store
from simplear.train.rewards.aesthetic import build_aesthetic_reward
from simplear.train.rewards.clip import build_clip_reward
from simplear.train.rewards.context import RewardBuilder, RewardContext, RewardFn
from simplear.train.rewards.geneval_shapes import build_geneval_shapes_reward

REWARD_BUILDERS: dict[str, RewardBuilder] = {
    "geneval_shapes": build_geneval_shapes_reward,
    "clip": build_clip_reward,
    "aesthetic": build_aesthetic_reward,
}


@dataclass(frozen=True)
class NamedReward:
    """A built reward and its name (its weight in the trainer's sum is the RewardSpec's, given to trl)."""

    name: str
    fn: RewardFn


def register_reward(name: str, builder: RewardBuilder) -> None:
    """Make `name` usable in a RewardSpec; a name already taken is an error."""
    if name in REWARD_BUILDERS:
        raise ValueError(f"reward {name!r} is already registered")
    REWARD_BUILDERS[name] = builder


def build_rewards(specs: Sequence[RewardSpec], device: torch.device | str, store: Store) -> list[NamedReward]:
    """Build every reward of a run, in order; an unknown or repeated name is an error."""
    names = [spec.name for spec in specs]
    unknown = [name for name in names if name not in REWARD_BUILDERS]
    if unknown:
        raise ValueError(f"unknown reward {unknown[0]!r}; known rewards: {', '.join(sorted(REWARD_BUILDERS))}")
    if len(set(names)) != len(names):
        raise ValueError(f"each reward may appear once; got {names}")
    context = RewardContext(torch.device(device), store)
    return [NamedReward(spec.name, REWARD_BUILDERS[spec.name](spec, context)) for spec in specs]

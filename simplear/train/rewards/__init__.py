"""GRPO rewards: plain callables `(prompts, images, metadata) -> list[float]` behind a registry.

HPSv2 is left out: its reference model is an open_clip checkpoint and open_clip needs torchvision, which no reward
may depend on. The `clip` reward covers image-text alignment and `aesthetic` the LAION aesthetic score.
"""

from simplear.train.rewards.context import RewardContext, RewardFn
from simplear.train.rewards.registry import REWARD_BUILDERS, NamedReward, build_rewards, register_reward

__all__ = ["REWARD_BUILDERS", "NamedReward", "RewardContext", "RewardFn", "build_rewards", "register_reward"]

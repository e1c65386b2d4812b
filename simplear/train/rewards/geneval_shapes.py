"""The exact shapes reward: the share of a prompt's GenEval clauses the image satisfies."""

from __future__ import annotations

from typing import Any

from PIL import Image

from simplear.config import RewardSpec
from simplear.data.shapes import score_image
from simplear.train.rewards.context import RewardContext, RewardFn


def geneval_shapes_reward(
    prompts: list[str], images: list[Image.Image], metadata: list[dict[str, Any] | None]
) -> list[float]:
    """`score_image(image, metadata).fraction` per image; every prompt needs its GenEval metadata."""
    missing = [prompt for prompt, meta in zip(prompts, metadata, strict=True) if meta is None]
    if missing:
        raise ValueError(f"reward geneval_shapes needs GenEval metadata in each prompt record; {missing[0]!r} has none")
    return [score_image(image, meta).fraction for image, meta in zip(images, metadata, strict=True)]


def build_geneval_shapes_reward(spec: RewardSpec, context: RewardContext) -> RewardFn:
    """The shapes scorer needs nothing loaded: it runs on the CPU, one image at a time."""
    return geneval_shapes_reward

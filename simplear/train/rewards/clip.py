"""The CLIP reward: cosine similarity between each image and its prompt in CLIP's joint embedding space."""

from __future__ import annotations

from typing import Any

from PIL import Image

from simplear.config import RewardSpec
from simplear.train.rewards.clip_loading import LoadedClip
from simplear.train.rewards.context import RewardContext, RewardFn


class ClipReward:
    """cos(image embedding, text embedding) per image, in [-1, 1], computed in batches on the CLIP model's device."""

    def __init__(self, clip: LoadedClip, batch_size: int) -> None:
        self.clip = clip
        self.batch_size = batch_size

    def __call__(
        self, prompts: list[str], images: list[Image.Image], metadata: list[dict[str, Any] | None]
    ) -> list[float]:
        """One similarity per (prompt, image) pair."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
        image = self.clip.image_embeddings(images, self.batch_size)
        text = self.clip.text_embeddings(prompts, self.batch_size)
        return (image * text).sum(dim=-1).tolist()


def build_clip_reward(spec: RewardSpec, context: RewardContext) -> RewardFn:
    """The CLIP reward on the model `spec.clip_model` names."""
    return ClipReward(context.clip(spec), spec.batch_size)

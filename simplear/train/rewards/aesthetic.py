"""The LAION aesthetic reward: the improved-aesthetic-predictor MLP over unit-norm CLIP image embeddings.

Checkpoint format: the MLP's state dict saved as safetensors, keys `layers.N.weight` / `layers.N.bias` for its
Linear layers (LAION's is Linear(768, 1024), Linear(1024, 128), Linear(128, 64), Linear(64, 16), Linear(16, 1) at
N = 0, 2, 4, 6, 7, with dropouts and no activations in between), over the embeddings of the CLIP model it was
trained on (ViT-L/14 for LAION's). LAION publishes it as a pickled `.pth`; convert it once with
`save_file(torch.load("sac+logos+ava1-l14-linearMSE.pth", weights_only=True), "aesthetic.safetensors")`
(`save_file` from `safetensors.torch`).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load

from simplear.config import RewardSpec
from simplear.store import Store
from simplear.train.rewards.clip_loading import LoadedClip
from simplear.train.rewards.context import RewardContext, RewardFn

_LAYER_KEY = re.compile(r"layers\.(\d+)\.weight")


def aesthetic_head_from_state(state: dict[str, torch.Tensor]) -> torch.nn.Sequential:
    """The chain of Linear layers a LAION-format state dict holds, in layer order, ending in one output."""
    indices = sorted(int(m.group(1)) for key in state if (m := _LAYER_KEY.fullmatch(key)))
    if not indices:
        raise ValueError("an aesthetic head needs Linear layers saved as layers.N.weight / layers.N.bias")
    layers = []
    for index in indices:
        weight, bias = state[f"layers.{index}.weight"], state.get(f"layers.{index}.bias")
        if layers and weight.shape[1] != layers[-1].out_features:
            raise ValueError(f"layers.{index} takes {weight.shape[1]} inputs but the layer before gives "
                             f"{layers[-1].out_features}")
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        layers.append(layer)
    if layers[-1].out_features != 1:
        raise ValueError(f"the last layer of an aesthetic head must give one score, not {layers[-1].out_features}")
    return torch.nn.Sequential(*layers).eval()


def load_aesthetic_head(uri: str, device: torch.device, store: Store | None = None) -> torch.nn.Sequential:
    """The aesthetic MLP from a .safetensors file (local path or store URI), on `device`."""
    if not uri.endswith(".safetensors"):
        raise ValueError(f"{uri}: the aesthetic head must be a .safetensors file (pickles are refused)")
    return aesthetic_head_from_state(load((store or Store()).read(uri))).to(device)


class AestheticReward:
    """The head's score of each image's unit-norm CLIP embedding (LAION's scale: roughly 1 to 10)."""

    def __init__(self, clip: LoadedClip, head: torch.nn.Sequential, batch_size: int) -> None:
        width = clip.model.config.projection_dim
        if head[0].in_features != width:
            raise ValueError(f"the aesthetic head reads {head[0].in_features}-d embeddings but CLIP gives {width}-d")
        self.clip = clip
        self.head = head
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(
        self, prompts: list[str], images: list[Image.Image], metadata: list[dict[str, Any] | None]
    ) -> list[float]:
        """One score per image; prompts and metadata are not read."""
        embeddings = self.clip.image_embeddings(images, self.batch_size)
        return self.head(embeddings.to(self.head[0].weight.dtype)).squeeze(-1).tolist()


def build_aesthetic_reward(spec: RewardSpec, context: RewardContext) -> RewardFn:
    """The aesthetic reward: CLIP from `spec.clip_model`, the MLP from `spec.aesthetic_head`."""
    if not spec.aesthetic_head:
        raise ValueError("reward 'aesthetic' needs aesthetic_head: the LAION aesthetic MLP as safetensors")
    head = load_aesthetic_head(spec.aesthetic_head, context.device, context.store)
    return AestheticReward(context.clip(spec), head, spec.batch_size)

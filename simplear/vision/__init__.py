"""Visual tokenizers: images to discrete codes and back."""

from __future__ import annotations

import torch

from simplear.config import VisionConfig
from simplear.vision.base import VisualTokenizer
from simplear.vision.cosmos import CosmosTokenizer
from simplear.vision.palette import PaletteTokenizer


def load_visual_tokenizer(
    config: VisionConfig, device: str = "cpu", encoder: bool = True, decoder: bool = True
) -> VisualTokenizer:
    """The visual tokenizer a vision config names; Cosmos needs its checkpoint path or URI."""
    if config.kind == "palette":
        return PaletteTokenizer(config.palette, cell=config.downsample)
    if not config.checkpoint:
        raise ValueError("the Cosmos tokenizer needs a checkpoint directory or URI (--vision-checkpoint)")
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return CosmosTokenizer.load(config.checkpoint, device, dtype, encoder=encoder, decoder=decoder)

"""What the server loads: the model (checkpoint directory, store URI or random init), engine and visual tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from simplear.config import ServeConfig, ServeLimits, VisionConfig, get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.engine import build_engine
from simplear.serve.images import ImageGenerator
from simplear.vision import load_visual_tokenizer


def load_generator(config: ServeConfig) -> tuple[ImageGenerator, tuple[int, ...]]:
    """The image generator a serve config names, and the resolutions it serves (the first is the default)."""
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    preset = get_preset(config.preset)
    if config.random_init:
        model = SimpleARModel.random_init(preset, dtype=dtype)
        model.lm.to(device)
    else:
        model = SimpleARModel.load(config.model_dir, dtype=dtype, device=device)
    source = "the random model" if config.random_init else config.model_dir
    vision = model.visual_tokenizer_config(config.preset, source, config.vision_checkpoint)
    tokenizer = None if config.codes_only else load_visual_tokenizer(vision, device=device, encoder=False)
    local_dir = None if config.random_init or not Path(config.model_dir).is_dir() else config.model_dir
    engine = build_engine(config.engine, model.lm.device.type, model_dir=local_dir, model=model)
    resolutions = served_resolutions(config.limits, vision, engine.max_positions)
    return ImageGenerator(engine, vision, tokenizer, device), resolutions


def served_resolutions(limits: ServeLimits, vision: VisionConfig, max_positions: int) -> tuple[int, ...]:
    """The configured resolutions (default: the checkpoint's), each checked against the tokenizer and the context."""
    resolutions = limits.resolutions or (vision.resolution,)
    for resolution in resolutions:
        if resolution <= 0 or resolution % vision.downsample:
            raise ValueError(f"resolution {resolution} is not a positive multiple of {vision.downsample} px")
        needed = limits.max_prompt_tokens + (resolution // vision.downsample) ** 2
        if needed > max_positions:
            raise ValueError(
                f"resolution {resolution} needs {needed} positions with prompts of up to {limits.max_prompt_tokens} "
                f"tokens; the model has {max_positions}: lower --max-prompt-tokens or the resolution"
            )
    return tuple(dict.fromkeys(resolutions))

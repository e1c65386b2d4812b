"""Command-line options shared by the commands that load a model and sample from it."""

from __future__ import annotations

import argparse

import torch
from pydantic import ValidationError

from simplear.config import PRESETS, SamplingConfig, VisionConfig, get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.vision import VisualTokenizer, load_visual_tokenizer


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model / --random-init, --preset, --vision-checkpoint, --resolution, --device."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint directory or store URI (a Hugging Face SimpleAR directory)")
    source.add_argument("--random-init", action="store_true", help="random weights of --preset (no checkpoint)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model shape and visual tokenizer")
    parser.add_argument("--vision-checkpoint", help="Cosmos tokenizer directory or URI (encoder.jit/decoder.jit)")
    parser.add_argument("--resolution", type=int, help="pixels per side (default: the model's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """--cfg-scale, --temperature, --top-k, --top-p, --seed, --negative-prompt, --repetition-penalty, --batch-size."""
    defaults = SamplingConfig()
    parser.add_argument("--cfg-scale", type=float, default=defaults.cfg_scale)
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="0 keeps every code")
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the first image; +1 per image")
    parser.add_argument("--negative-prompt", help="replaces the fixed negative prompt of the unconditional row")
    parser.add_argument("--repetition-penalty", type=float,
                        help="on codes already drawn (default: the checkpoint's generation_config.json, else 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="images decoded together")


def sampling_from_args(command: str, args: argparse.Namespace) -> SamplingConfig:
    """The validated sampling config, or a one-line exit naming the bad value."""
    try:
        return SamplingConfig(
            cfg_scale=args.cfg_scale, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            seed=args.seed, negative_prompt=args.negative_prompt, repetition_penalty=args.repetition_penalty,
        )
    except ValidationError as err:
        raise SystemExit(f"simplear {command}: {err}") from None


def load_model(command: str, model: str | None, preset: str, vision_checkpoint: str | None = None,
               resolution: int | None = None, device: str | None = None,
               seed: int = 0) -> tuple[SimpleARModel, VisualTokenizer, VisionConfig]:
    """The model (a checkpoint, or random weights of the preset when `model` is None), its visual tokenizer (decoder
    only) and the vision config in use; device None is cuda when available, else cpu."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if model is None:
        loaded = SimpleARModel.random_init(get_preset(preset), seed=seed, dtype=dtype)
        loaded.lm.to(device)
    else:
        loaded = SimpleARModel.load(model, dtype=dtype, device=device)
    try:
        vision = loaded.visual_tokenizer_config(preset, model or "the random model", vision_checkpoint, resolution)
    except ValueError as err:
        raise SystemExit(f"simplear {command}: {err}") from None
    return loaded, load_visual_tokenizer(vision, device=device, encoder=False), vision


def model_from_args(command: str, args: argparse.Namespace) -> tuple[SimpleARModel, VisualTokenizer, VisionConfig]:
    """load_model of the add_model_arguments flags."""
    return load_model(command, None if args.random_init else args.model, args.preset, args.vision_checkpoint,
                      args.resolution, args.device, args.seed)

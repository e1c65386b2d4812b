"""`simplear train`: pretrain or SFT on token shards; run one copy per rank under torchrun (or alone for one rank)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from simplear.config import TrainConfig
from simplear.train import distributed

FLAGS: dict[str, dict] = {
    "--stage": {"choices": ["pretrain", "sft"], "help": "which stage this run is"},
    "--data": {"help": "token dataset root (local path or s3:// URI)"},
    "--output": {"help": "run root for checkpoints/, logs/, tensorboard/ and final/"},
    "--init": {"choices": ["random", "text_lm", "checkpoint"], "help": "what the model starts from"},
    "--init-from": {"help": "text LM directory or previous stage's model (for --init text_lm / checkpoint)"},
    "--preset": {"help": "model preset of a random init (default tiny)"},
    "--zero-stage": {"type": int, "choices": [2, 3], "help": "DeepSpeed ZeRO stage (default 2)"},
    "--precision": {"choices": ["auto", "bf16", "fp32"], "help": "auto: bf16 on GPU, fp32 on CPU"},
    "--max-steps": {"type": int, "help": "optimizer steps to train for"},
    "--batch-size": {"type": int, "help": "sequences per device per micro-step"},
    "--grad-accum": {"type": int, "help": "micro-steps per optimizer step"},
    "--learning-rate": {"type": float},
    "--lr-schedule": {"choices": ["constant", "constant_with_warmup", "linear", "cosine"]},
    "--warmup-steps": {"type": int},
    "--weight-decay": {"type": float},
    "--max-grad-norm": {"type": float},
    "--p-drop-cond": {"type": float, "help": "share of prompts dropped to <|t2i|><|soi|> (default 0.1)"},
    "--max-prompt-tokens": {"type": int},
    "--dataloader-workers": {"type": int},
    "--save-steps": {"type": int, "help": "checkpoint to the store every this many steps"},
    "--logging-steps": {"type": int, "help": "write a metrics row every this many steps"},
    "--scratch": {"help": "local directory for this rank's files (default: the temp dir)"},
    "--seed": {"type": int},
}
SWITCHES: dict[str, tuple[str, bool, str]] = {
    "--long-captions-only": ("sample_short", False, "always train on the long caption"),
    "--gradient-checkpointing": ("gradient_checkpointing", True, "recompute activations in the backward pass"),
    "--no-tensorboard": ("tensorboard", False, "write no TensorBoard event files"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The train subcommand's flags; each overrides the same field of --config."""
    parser.add_argument("--config", type=Path, help="YAML or JSON file of TrainConfig fields")
    for flag, options in FLAGS.items():
        parser.add_argument(flag, **options)
    for flag, (dest, value, help_text) in SWITCHES.items():
        parser.add_argument(flag, dest=dest, action="store_const", const=value, help=help_text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from --config (if any) with every given flag on top."""
    fields: dict = {}
    if args.config is not None:
        text = args.config.read_text()
        fields = json.loads(text) if args.config.suffix == ".json" else yaml.safe_load(text) or {}
    names = [flag[2:].replace("-", "_") for flag in FLAGS] + [dest for dest, _, _ in SWITCHES.values()]
    fields.update({name: getattr(args, name) for name in names if getattr(args, name) is not None})
    return TrainConfig.model_validate(fields)


def _log_progress_to_stderr() -> None:
    """Show the platform's INFO messages (resume point, checkpoints, final model), tagged with the rank."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank{distributed.rank()} %(name)s: %(message)s"))
    logger = logging.getLogger("simplear")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def run(args: argparse.Namespace) -> int:
    """Train one stage; returns 0 when the final model is in the store, 2 for an invalid configuration."""
    try:
        config = config_from_args(args)
    except ValidationError as exc:
        print(f"simplear train: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from simplear.train.pretrain import train

    distributed.ensure_launch_env()
    _log_progress_to_stderr()
    result = train(config)
    if distributed.rank() == 0:
        print(json.dumps({"final": result.final, "steps": result.steps, "resumed_from": result.resumed_from}))
    return 0

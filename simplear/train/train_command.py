"""`simplear train`: pretrain, SFT or GRPO; run one copy per rank under torchrun (or alone for one rank)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from simplear.config import GRPOTrainConfig, RewardSpec, TrainConfig
from simplear.config.flags import add_config_flags, config_flags, json_fields, with_flags
from simplear.train import job

STAGE_OWNERS = {"pretrain": "pretrain/sft", "sft": "pretrain/sft", "grpo": "grpo"}
CONFIG_FLAGS = config_flags({"pretrain/sft": TrainConfig, "grpo": GRPOTrainConfig}, skip={"stage"},
                            nested={"sampling": {"seed", "repetition_penalty"}})
REWARD_FLAGS: dict[str, dict] = {
    "--reward": {"action": "append", "metavar": "NAME[:WEIGHT]", "help": "grpo: a reward and its weight (repeatable)"},
    "--clip-model": {"help": "grpo: CLIP directory or URI for the clip and aesthetic rewards"},
    "--aesthetic-head": {"help": "grpo: LAION aesthetic MLP (.safetensors) for the aesthetic reward"},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The train subcommand's flags: one per field of TrainConfig / GRPOTrainConfig, each over the same field of
    --config / --config-json, and --reward for GRPO's reward specs."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="YAML or JSON file of TrainConfig / GRPOTrainConfig fields")
    source.add_argument("--config-json", metavar="JSON",
                        help="the same fields as one JSON object (how the pipelines pass a stage's config)")
    parser.add_argument("--stage", choices=list(STAGE_OWNERS), help="which stage this run is (default: --config's)")
    add_config_flags(parser, CONFIG_FLAGS)
    for flag, options in REWARD_FLAGS.items():
        parser.add_argument(flag, **options)


def config_from_args(args: argparse.Namespace) -> TrainConfig | GRPOTrainConfig:
    """TrainConfig (pretrain, sft) or GRPOTrainConfig (grpo) from --config or --config-json (if any) with every given
    flag on top; ValueError for a flag of another stage or a config of another stage than --stage."""
    fields: dict = {}
    if args.config is not None:
        text = args.config.read_text()
        fields = json.loads(text) if args.config.suffix == ".json" else yaml.safe_load(text) or {}
        if not isinstance(fields, dict):
            raise ValueError("the config must be a mapping of TrainConfig / GRPOTrainConfig fields")
    elif args.config_json is not None:
        fields = json_fields(args.config_json, "TrainConfig / GRPOTrainConfig")
    if args.stage and fields.get("stage", args.stage) != args.stage:
        raise ValueError(f"--stage {args.stage} but the config is stage {fields['stage']!r}")
    stage = args.stage or fields.get("stage") or "pretrain"
    if stage not in STAGE_OWNERS:
        raise ValueError(f"stage {stage!r} is not one of {', '.join(STAGE_OWNERS)}")
    fields = with_flags({**fields, "stage": stage}, args, CONFIG_FLAGS, STAGE_OWNERS[stage], f"--stage {stage}")
    if stage != "grpo":
        rewards = [flag for flag in REWARD_FLAGS if getattr(args, flag[2:].replace("-", "_")) is not None]
        if rewards:
            raise ValueError(f"{', '.join(rewards)} not used by --stage {stage}")
        return TrainConfig.model_validate(fields)
    if args.reward:
        fields["rewards"] = [RewardSpec.from_text(text, args.clip_model, args.aesthetic_head) for text in args.reward]
    return GRPOTrainConfig.model_validate(fields)


def _log_progress_to_stderr() -> None:
    """Show the platform's INFO messages (resume point, checkpoints, final model), tagged with the rank."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank{job.rank()} %(name)s: %(message)s"))
    logger = logging.getLogger("simplear")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def run(args: argparse.Namespace) -> int:
    """Train one stage; returns 0 when the final model is in the store, 2 for an invalid configuration."""
    try:
        config = config_from_args(args)
    except (ValidationError, ValueError) as exc:
        print(f"simplear train: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if isinstance(config, GRPOTrainConfig):
        from simplear.train.grpo.trainer import train_grpo as train
    else:
        from simplear.train.pretrain import train

    job.ensure_launch_env()
    _log_progress_to_stderr()
    result = train(config)
    if job.rank() == 0:
        print(json.dumps({"final": result.final, "steps": result.steps, "resumed_from": result.resumed_from}))
    return 0

"""`simplear train`: pretrain, SFT or GRPO; run one copy per rank under torchrun (or alone for one rank)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from simplear.config import GRPOTrainConfig, TrainConfig
from simplear.train import job

SHARED_FLAGS: dict[str, dict] = {
    "--stage": {"choices": ["pretrain", "sft", "grpo"], "help": "which stage this run is"},
    "--output": {"help": "run root for checkpoints/, logs/, tensorboard/ and final/"},
    "--init-from": {"help": "text LM directory or previous stage's model (for --init text_lm / checkpoint; grpo)"},
    "--preset": {"help": "model preset of a random init; grpo: visual tokenizer of a model without vision.json"},
    "--precision": {"choices": ["auto", "bf16", "fp32"], "help": "auto: bf16 on GPU, fp32 on CPU"},
    "--max-steps": {"type": int, "help": "optimizer steps to train for"},
    "--batch-size": {"type": int, "help": "sequences (grpo: images) per device per micro-step"},
    "--grad-accum": {"type": int, "help": "micro-steps per optimizer step"},
    "--learning-rate": {"type": float},
    "--weight-decay": {"type": float, "help": "pretrain / SFT default 0.01 (upstream's); grpo default 0"},
    "--max-grad-norm": {"type": float},
    "--save-steps": {"type": int, "help": "checkpoint to the store every this many steps"},
    "--logging-steps": {"type": int, "help": "write a metrics row every this many steps"},
    "--scratch": {"help": "local directory for this rank's files (default: the temp dir)"},
    "--seed": {"type": int},
}
PRETRAIN_FLAGS: dict[str, dict] = {
    "--data": {"help": "token dataset root (local path or s3:// URI)"},
    "--init": {"choices": ["random", "text_lm", "checkpoint"], "help": "what the model starts from"},
    "--zero-stage": {"type": int, "choices": [2, 3], "help": "DeepSpeed ZeRO stage (default 2)"},
    "--lr-schedule": {"choices": ["constant", "constant_with_warmup", "linear", "cosine"],
                      "help": "default constant (upstream's)"},
    "--loss-on": {"choices": ["all", "codes"], "help": "loss on every token (default, upstream's) or on codes only"},
    "--warmup-steps": {"type": int},
    "--p-drop-cond": {"type": float, "help": "share of prompts dropped to <|t2i|><|soi|> (default 0.1)"},
    "--max-prompt-tokens": {"type": int},
    "--dataloader-workers": {"type": int},
}
GRPO_FLAGS: dict[str, dict] = {
    "--prompts": {"help": "grpo: meta file or mixing YAML of captioned records (path or URI)"},
    "--caption": {"choices": ["short", "long", "mixed"], "help": "grpo: which caption of a {short, long} record"},
    "--vision-checkpoint": {"help": "grpo: Cosmos tokenizer decoding the rollouts (default: the model's)"},
    "--resolution": {"type": int, "help": "grpo: rollout pixels per side (default: the visual tokenizer's)"},
    "--rollout": {"choices": ["in_process", "http"], "help": "grpo: where rollouts come from"},
    "--rollout-url": {"help": "grpo: base URL of the rollout server (--rollout http)"},
    "--rollout-batch-size": {"type": int, "help": "grpo: images the in-process sampler decodes at once"},
    "--rollout-weight-sync": {"choices": ["auto", "nccl", "store"],
                              "help": "grpo: auto: NCCL when trainer and server run on CUDA, else the store"},
    "--rollout-sync-host": {"help": "grpo: address of this pod the server joins for NCCL (default 127.0.0.1)"},
    "--rollout-sync-port": {"type": int, "help": "grpo: NCCL rendezvous port rank 0 opens (default 51216)"},
    "--num-generations": {"type": int, "help": "grpo: images per prompt (default 4)"},
    "--max-minutes": {"type": float, "help": "grpo: stop with a checkpoint after this much training time"},
    "--num-iterations": {"type": int, "help": "grpo: optimizer passes over each batch of rollouts"},
    "--warmup-ratio": {"type": float, "help": "grpo: share of the steps spent warming up (default 0.1)"},
    "--min-lr-ratio": {"type": float, "help": "grpo: the cosine ends at this share of the peak (default 0.1)"},
    "--policy": {"choices": ["plain", "guided"],
                 "help": "grpo: plain: rollouts without CFG (default, upstream's); guided: CFG rollouts and loss"},
    "--prompt-prefix": {"help": "grpo: text put before every caption (default upstream's 'A photo of ')"},
    "--beta": {"type": float, "help": "grpo: KL coefficient to the initial model (default 0.04, upstream's)"},
    "--epsilon": {"type": float, "help": "grpo: ratio clipping (default 0.2)"},
    "--epsilon-high": {"type": float, "help": "grpo: upper clipping bound (default: --epsilon)"},
    "--loss-type": {"choices": ["grpo", "bnpo", "dr_grpo", "dapo"]},
    "--scale-rewards": {"choices": ["group", "batch", "none"]},
}
SAMPLING_FLAGS: dict[str, dict] = {
    "--cfg-scale": {"type": float, "help": "grpo: CFG scale of the rollouts (default 1; policy guided needs another)"},
    "--negative-prompt": {"help": "grpo: the unconditional row's text under CFG ('' = the CFG-dropped prompt)"},
    "--temperature": {"type": float, "help": "grpo: sampling temperature (default 1)"},
    "--top-k": {"type": int},
    "--top-p": {"type": float},
}
REWARD_FLAGS: dict[str, dict] = {
    "--reward": {"action": "append", "metavar": "NAME[:WEIGHT]", "help": "grpo: a reward and its weight (repeatable)"},
    "--clip-model": {"help": "grpo: CLIP directory or URI for the clip and aesthetic rewards"},
    "--aesthetic-head": {"help": "grpo: LAION aesthetic MLP (.safetensors) for the aesthetic reward"},
}
SWITCHES: dict[str, tuple[str, bool, str]] = {
    "--gradient-checkpointing": ("gradient_checkpointing", True, "recompute activations in the backward pass"),
    "--no-tensorboard": ("tensorboard", False, "write no TensorBoard event files"),
}
PRETRAIN_SWITCHES: dict[str, tuple[str, bool, str]] = {
    "--long-captions-only": ("sample_short", False, "always train on the long caption"),
}


def _dest(flag: str) -> str:
    """The config field (and argparse destination) of a flag."""
    return flag[2:].replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The train subcommand's flags; each overrides the same field of --config."""
    parser.add_argument("--config", type=Path, help="YAML or JSON file of TrainConfig / GRPOTrainConfig fields")
    for flags in (SHARED_FLAGS, PRETRAIN_FLAGS, GRPO_FLAGS, SAMPLING_FLAGS, REWARD_FLAGS):
        for flag, options in flags.items():
            parser.add_argument(flag, **options)
    for flag, (dest, value, help_text) in {**SWITCHES, **PRETRAIN_SWITCHES}.items():
        parser.add_argument(flag, dest=dest, action="store_const", const=value, help=help_text)


def _given(args: argparse.Namespace, names: list[str]) -> dict:
    """The named arguments that were given on the command line."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _refuse(args: argparse.Namespace, flags: dict[str, str], stage: str) -> None:
    """A flag (flag -> destination) of another stage is an error rather than silently ignored."""
    wrong = [flag for flag, dest in flags.items() if getattr(args, dest) is not None]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} not used by --stage {stage}")


def _reward_specs(args: argparse.Namespace) -> list[dict]:
    """RewardSpec fields from --reward NAME[:WEIGHT], with the CLIP model and head for the rewards that read them."""
    specs = []
    for text in args.reward:
        name, _, weight = text.partition(":")
        spec: dict = {"name": name, "weight": float(weight) if weight else 1.0}
        if name in ("clip", "aesthetic") and args.clip_model:
            spec["clip_model"] = args.clip_model
        if name == "aesthetic" and args.aesthetic_head:
            spec["aesthetic_head"] = args.aesthetic_head
        specs.append(spec)
    return specs


def _grpo_fields(args: argparse.Namespace, fields: dict) -> dict:
    """GRPOTrainConfig fields: --config's with the GRPO and shared flags on top."""
    _refuse(args, {**{f: _dest(f) for f in PRETRAIN_FLAGS}, **{f: d for f, (d, _, _) in PRETRAIN_SWITCHES.items()}},
            "grpo")
    names = [_dest(flag) for flag in (*SHARED_FLAGS, *GRPO_FLAGS)] + [dest for dest, _, _ in SWITCHES.values()]
    fields.update(_given(args, names))
    sampling = _given(args, [_dest(flag) for flag in SAMPLING_FLAGS])
    if sampling:
        fields["sampling"] = {**fields.get("sampling", {}), **sampling}
    if args.reward:
        fields["rewards"] = _reward_specs(args)
    return fields


def config_from_args(args: argparse.Namespace) -> TrainConfig | GRPOTrainConfig:
    """TrainConfig (pretrain, sft) or GRPOTrainConfig (grpo) from --config (if any) with every given flag on top."""
    fields: dict = {}
    if args.config is not None:
        text = args.config.read_text()
        fields = json.loads(text) if args.config.suffix == ".json" else yaml.safe_load(text) or {}
    if (args.stage or fields.get("stage")) == "grpo":
        return GRPOTrainConfig.model_validate(_grpo_fields(args, fields))
    other = {flag: _dest(flag) for flag in (*GRPO_FLAGS, *SAMPLING_FLAGS, *REWARD_FLAGS)}
    _refuse(args, other, args.stage or fields.get("stage") or "pretrain")
    names = [_dest(flag) for flag in (*SHARED_FLAGS, *PRETRAIN_FLAGS)]
    names += [dest for dest, _, _ in {**SWITCHES, **PRETRAIN_SWITCHES}.values()]
    fields.update(_given(args, names))
    return TrainConfig.model_validate(fields)


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

"""`simplear tokenize`: command-line flags and RANK / WORLD_SIZE to a typed TokenizeConfig and one rank's run."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping

import torch
from pydantic import ValidationError

from simplear.config import PRESETS, TokenizeConfig, get_preset
from simplear.data.meta import MetaError
from simplear.data.tokenize.manifest import RanksNotFinished
from simplear.data.tokenize.ranks import RunOptions, TokenizeError, run_tokenize
from simplear.store import StoreError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


DATASET_FLAGS = ("meta", "output", "preset", "resolution", "vision_checkpoint", "shard_size", "min_size", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `simplear tokenize`: the dataset (flags, or a whole TokenizeConfig as --config-json) and how
    this rank runs."""
    parser.add_argument("--config-json", metavar="JSON",
                        help="TokenizeConfig fields as one JSON object, instead of the dataset flags (how the "
                             "pipelines pass the step's config)")
    parser.add_argument("--meta", help="meta file (.json, .jsonl) or mixing YAML: path or store URI")
    parser.add_argument("--output", help="token dataset root: path or store URI")
    parser.add_argument("--preset", choices=list(PRESETS), help="model preset naming the tokenizer (default tiny)")
    parser.add_argument("--resolution", type=int, help="image side in pixels (default: the preset's)")
    parser.add_argument("--vision-checkpoint", help="Cosmos tokenizer directory or URI (encoder.jit)")
    parser.add_argument("--shard-size", type=int, help="meta records per shard (default 1000)")
    parser.add_argument("--min-size", type=int, help="reject images with a shorter short edge (default: resolution)")
    parser.add_argument("--seed", type=int, help="seed of random sampling in a mixing YAML (default 0)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="encode on this device (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=32, help="images encoded at once")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="image-loading threads")
    parser.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds rank 0 waits for the other ranks")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_config(args: argparse.Namespace) -> TokenizeConfig:
    """The TokenizeConfig of --config-json or of the dataset flags; pydantic's ValidationError when a value is
    invalid, ValueError when the two are mixed or --meta / --output are missing."""
    given = [f"--{name.replace('_', '-')}" for name in DATASET_FLAGS if getattr(args, name) is not None]
    if args.config_json is not None:
        if given:
            raise ValueError(f"give the dataset as --config-json or as flags, not both ({', '.join(given)})")
        return TokenizeConfig.model_validate_json(args.config_json)
    if args.meta is None or args.output is None:
        raise ValueError("--meta and --output are required (or a whole config as --config-json)")
    vision = get_preset(args.preset or "tiny").vision.model_dump()
    if args.resolution is not None:
        vision["resolution"] = args.resolution
    if args.vision_checkpoint is not None:
        vision["checkpoint"] = args.vision_checkpoint
    fields = {"meta": args.meta, "output": args.output, "vision": vision, "seed": args.seed or 0}
    if args.shard_size is not None:
        fields["shard_size"] = args.shard_size
    if args.min_size is not None:
        fields["min_size"] = args.min_size
    return TokenizeConfig.model_validate(fields)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per invalid value: where it is and what is wrong with it."""
    return "\n".join(f"  {'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}" for error in exc.errors())


def rank_from_env(env: Mapping[str, str]) -> tuple[int, int]:
    """RANK and WORLD_SIZE as torchrun and PyTorchJob set them (0 and 1 when unset); ValueError if not integers."""
    values = []
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1")):
        raw = env.get(name, default)
        try:
            values.append(int(raw))
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    return values[0], values[1]


def device_from(choice: str | None, env: Mapping[str, str]) -> str:
    """The torch device: the chosen (or available) kind, on GPU the one LOCAL_RANK names."""
    kind = choice or ("cuda" if torch.cuda.is_available() else "cpu")
    return f"cuda:{env.get('LOCAL_RANK', '0')}" if kind == "cuda" else "cpu"


def run(args: argparse.Namespace) -> int:
    """Run this process's rank of the tokenize job; 0 on success, 1 on a run error, 2 on invalid settings."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        config = build_config(args)
        rank, world_size = rank_from_env(os.environ)
    except ValidationError as exc:
        print(f"simplear tokenize: invalid settings:\n{describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"simplear tokenize: {exc}", file=sys.stderr)
        return 2
    options = RunOptions(
        rank=rank,
        world_size=world_size,
        device=device_from(args.device, os.environ),
        batch_size=args.batch_size,
        workers=args.workers,
        wait_timeout_s=args.wait_timeout,
        progress=not args.no_progress,
    )
    try:
        run_tokenize(config, options)
    except (TokenizeError, RanksNotFinished, StoreError, MetaError) as exc:
        print(f"simplear tokenize: error: {exc}", file=sys.stderr)
        return 1
    return 0

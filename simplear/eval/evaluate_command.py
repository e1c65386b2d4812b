"""`simplear evaluate`: GenEval or DPG-Bench prompts to images in the benchmark's own layout; shapes runs scored.

`--protocol fixed` (default) samples as the flags say; `--protocol simplear` is upstream's published protocol
(simplear.eval.protocols). The flags are EvaluateConfig's fields; the pipelines pass the config as --config-json.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from pydantic import ValidationError

from simplear.cli_args import load_model
from simplear.config import EvaluateConfig, SamplingConfig, VisionConfig
from simplear.config.flags import add_config_flags, config_flags, json_fields, with_flags
from simplear.eval.dpg_run import read_dpg_prompts, run_dpg
from simplear.eval.geneval_layout import PromptFileError, read_geneval_prompts
from simplear.eval.geneval_run import run_geneval
from simplear.sampling.sampler import Sampler
from simplear.store import Store, StoreError, canonical, claim_settings

SETTINGS_FILE = "evaluate.json"


CONFIG_FLAGS = config_flags({"evaluate": EvaluateConfig}, nested={"sampling": set()})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `simplear evaluate`: one per field of EvaluateConfig (its sampling included), each over the same
    field of --config-json; RANK and WORLD_SIZE come from the environment."""
    parser.add_argument("--config-json", metavar="JSON",
                        help="EvaluateConfig fields as one JSON object (how the pipelines pass the step's config)")
    add_config_flags(parser, CONFIG_FLAGS)


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    """The evaluation's config: --config-json's fields with every given flag on top."""
    fields = json_fields(args.config_json, "EvaluateConfig") if args.config_json else {}
    return EvaluateConfig.model_validate(with_flags(fields, args, CONFIG_FLAGS, "evaluate", "simplear evaluate"))


def evaluate_settings(config: EvaluateConfig, sampling: SamplingConfig, vision: VisionConfig,
                      num_prompts: int) -> dict:
    """What an evaluation's images depend on; a rerun into the same --out must match them to resume."""
    return {
        "benchmark": config.benchmark,
        "prompts": canonical(config.prompts),
        "num_prompts": num_prompts,
        "images_per_prompt": 4 if config.benchmark == "dpg" else config.images_per_prompt,
        "model": f"random-init:{config.preset}" if config.random_init else canonical(config.model),
        "vision": vision.kind,
        "vision_checkpoint": vision.checkpoint and canonical(vision.checkpoint),
        "resolution": vision.resolution,
        **sampling.model_dump(mode="json"),
    }


def run(args: argparse.Namespace) -> int:
    """Generate this rank's part; rank 0 prints the shapes summary when asked to score."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise SystemExit(f"simplear evaluate: need 0 <= RANK < WORLD_SIZE, not RANK {rank}, WORLD_SIZE {world}")
    try:
        config = config_from_args(args)
    except (ValidationError, ValueError) as err:
        raise SystemExit(f"simplear evaluate: {err}") from None
    sampling = config.protocol_sampling()
    store = Store()
    try:
        prompts = read_geneval_prompts(store, config.prompts) if config.benchmark == "geneval" \
            else read_dpg_prompts(store, config.prompts)
    except (PromptFileError, ValueError, StoreError) as err:
        raise SystemExit(f"simplear evaluate: {err}") from None
    model, tokenizer, vision = load_model("evaluate", config.model, config.preset, config.vision_checkpoint,
                                          config.resolution, config.device, sampling.seed)
    claim_settings(store, config.out, SETTINGS_FILE, evaluate_settings(config, sampling, vision, len(prompts)),
                   "evaluate", "--out")
    sampler, grid = Sampler(model), vision.grid
    if config.benchmark == "dpg":
        run_dpg(sampler, tokenizer, prompts, config.out, sampling, grid, config.batch_size, rank, world, store,
                config.progress, config.protocol)
        return 0
    summary = run_geneval(sampler, tokenizer, prompts, config.out, config.images_per_prompt, sampling, grid,
                          config.batch_size, rank, world, config.score_shapes, store, progress=config.progress,
                          protocol=config.protocol)
    if summary is not None:
        print(json.dumps({"per_tag": asdict(summary)["per_tag"], "overall": summary.overall}))
    return 0

"""`simplear evaluate`: GenEval or DPG-Bench prompts to images in the benchmark's own layout; shapes runs scored.

`--protocol fixed` (default) samples as the flags say; `--protocol simplear` is upstream's published protocol
(simplear.eval.protocols).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from simplear.cli_args import add_model_arguments, add_sampling_arguments, model_from_args, sampling_from_args
from simplear.config import SamplingConfig, VisionConfig
from simplear.eval.dpg_run import read_dpg_prompts, run_dpg
from simplear.eval.geneval_layout import PromptFileError, read_geneval_prompts
from simplear.eval.geneval_run import run_geneval
from simplear.eval.protocols import PROTOCOLS, SIMPLEAR_IMAGES_PER_PROMPT, protocol_sampling
from simplear.sampling.sampler import Sampler
from simplear.store import Store, StoreError, canonical, claim_settings

SETTINGS_FILE = "evaluate.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `simplear evaluate`; RANK and WORLD_SIZE come from the environment."""
    parser.add_argument("--benchmark", choices=("geneval", "dpg"), default="geneval")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="fixed",
                        help="fixed: the flags' sampling behind the fixed prefix; simplear: upstream's (random "
                             "prefixes, its negative prompt, CFG 6, top-k 64000, 4 images, GenEval reprompts)")
    parser.add_argument("--prompts", required=True,
                        help="geneval: evaluation_metadata.jsonl; dpg: a folder of <id>.txt (path or store URI)")
    parser.add_argument("--out", required=True, help="output folder (path or store URI)")
    parser.add_argument("--images-per-prompt", type=int, default=4,
                        help="images per prompt (GenEval; DPG always tiles 4)")
    parser.add_argument("--score-shapes", action="store_true", help="score with the exact shapes scorer (rank 0)")
    parser.add_argument("--no-progress", action="store_true")
    add_model_arguments(parser)
    add_sampling_arguments(parser)


def evaluate_settings(args: argparse.Namespace, sampling: SamplingConfig, vision: VisionConfig,
                      num_prompts: int) -> dict:
    """What an evaluation's images depend on; a rerun into the same --out must match them to resume."""
    return {
        "benchmark": args.benchmark,
        "prompts": canonical(args.prompts),
        "num_prompts": num_prompts,
        "images_per_prompt": 4 if args.benchmark == "dpg" else args.images_per_prompt,
        "model": f"random-init:{args.preset}" if args.random_init else canonical(args.model),
        "vision": vision.kind,
        "vision_checkpoint": vision.checkpoint and canonical(vision.checkpoint),
        "resolution": vision.resolution,
        **sampling.model_dump(mode="json"),
    }


def run(args: argparse.Namespace) -> int:
    """Generate this rank's part; rank 0 prints the shapes summary when asked to score."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if args.images_per_prompt < 1 or args.batch_size < 1 or not 0 <= rank < world:
        raise SystemExit("simplear evaluate: need --images-per-prompt >= 1, --batch-size >= 1 "
                         "and 0 <= RANK < WORLD_SIZE")
    if args.protocol == "simplear" and args.images_per_prompt != SIMPLEAR_IMAGES_PER_PROMPT:
        raise SystemExit(f"simplear evaluate: protocol simplear draws {SIMPLEAR_IMAGES_PER_PROMPT} images per prompt")
    try:
        sampling = protocol_sampling(args.protocol, sampling_from_args("evaluate", args))
    except ValueError as err:
        raise SystemExit(f"simplear evaluate: {err}") from None
    store = Store()
    try:
        prompts = read_geneval_prompts(store, args.prompts) if args.benchmark == "geneval" \
            else read_dpg_prompts(store, args.prompts)
    except (PromptFileError, ValueError, StoreError) as err:
        raise SystemExit(f"simplear evaluate: {err}") from None
    model, tokenizer, vision = model_from_args("evaluate", args)
    claim_settings(store, args.out, SETTINGS_FILE, evaluate_settings(args, sampling, vision, len(prompts)),
                   "evaluate", "--out")
    sampler, grid = Sampler(model), vision.grid
    progress = not args.no_progress
    if args.benchmark == "dpg":
        run_dpg(sampler, tokenizer, prompts, args.out, sampling, grid, args.batch_size, rank, world, store, progress,
                args.protocol)
        return 0
    summary = run_geneval(sampler, tokenizer, prompts, args.out, args.images_per_prompt, sampling, grid,
                          args.batch_size, rank, world, args.score_shapes, store, progress=progress,
                          protocol=args.protocol)
    if summary is not None:
        print(json.dumps({"per_tag": asdict(summary)["per_tag"], "overall": summary.overall}))
    return 0

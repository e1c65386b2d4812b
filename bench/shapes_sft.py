"""Quality on the shapes benchmark: the shapes recipe's pretrain and SFT on 2 CPU cores, scored after each, per seed.

Runs the real commands the lifecycle pipeline runs (`simplear shapes`, `tokenize`, `train` under torchrun,
`evaluate --score-shapes`) with the recipe's values (`ShapesRecipe.seeded(seed)` for each seed; `--set` overrides
fields, for trying a recipe) on the held-out GenEval-style prompts, and writes `bench/results/shapes_sft.json`:
{"preset", "minutes", "stages": {"init"|"pretrain"|"sft": {<tag>: score, "overall": score, "seconds"?}},
"seeds": [{"seed", "minutes", "stages"}, ...], "min_overall": {...}}; the top level is the first seed's run.
It replaces no baseline: the ratio it prints is the worst seed's SFT overall over the bar (0.40).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_output import emit

from simplear.config import SHAPES_RECIPES, ShapesRecipe, TrainConfig

SFT_BAR = 0.40


def simplear(*args: str, ranks: int = 1) -> str:
    """Run a simplear command (under torchrun for several ranks) and return its stdout."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks)] if ranks > 1 \
        else [sys.executable]
    done = subprocess.run([*launcher, "-m", "simplear.cli", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"simplear {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def evaluate(recipe: ShapesRecipe, model: list[str], prompts: Path, out: Path) -> dict:
    """Per-tag and overall scores of a model on the held-out prompts, sampled as the lifecycle's evaluation."""
    stdout = simplear("evaluate", *model, "--prompts", prompts, "--out", out, "--score-shapes", "--no-progress",
                      "--images-per-prompt", recipe.eval_images_per_prompt, "--batch-size", 64,
                      "--protocol", recipe.eval_protocol, "--cfg-scale", recipe.cfg_scale,
                      "--negative-prompt", recipe.negative_prompt, "--seed", recipe.seed)
    scores = json.loads(stdout.strip().splitlines()[-1])
    return {**scores["per_tag"], "overall": scores["overall"]}


def train(recipe: ShapesRecipe, stage: str, data: Path, out: Path, init: list[str]) -> float:
    """Train one stage as the lifecycle's step does (its TrainConfig) and return its wall-clock seconds."""
    steps, learning_rate = (recipe.pretrain_steps, recipe.pretrain_learning_rate) if stage == "pretrain" \
        else (recipe.sft_steps, recipe.sft_learning_rate)
    config = TrainConfig(
        stage=stage, data=str(data), output=str(out), preset=recipe.preset, init="checkpoint" if init else "random",
        init_from=init[0] if init else None, max_steps=steps, batch_size=recipe.batch_size, learning_rate=learning_rate,
        lr_schedule=recipe.train_lr_schedule, weight_decay=recipe.train_weight_decay,
        adam_beta2=recipe.train_adam_beta2, loss_on=recipe.train_loss_on,
        prompt_prefixes=recipe.train_prompt_prefixes,
        warmup_steps=max(1, steps // 20), save_steps=steps, logging_steps=25, tensorboard=False, seed=recipe.seed,
    )
    start = time.perf_counter()
    simplear("train", "--config-json", config.model_dump_json(exclude_defaults=True),
             ranks=recipe.procs_per_node or 1)
    return time.perf_counter() - start


def run_seed(recipe: ShapesRecipe, work: Path, score_init: bool) -> dict:
    """Data, tokens, pretrain and SFT of one seeded recipe, scored after each stage."""
    shutil.rmtree(work, ignore_errors=True)
    for name, images, seed, weights in (
            ("pretrain", recipe.pretrain_images, recipe.pretrain_data_seed, recipe.pretrain_tag_weights),
            ("sft", recipe.sft_images, recipe.sft_data_seed, recipe.sft_tag_weights)):
        simplear("shapes", "--out", work / f"{name}_data", "--n", images, "--seed", seed,
                 "--eval-per-tag", recipe.eval_per_tag, "--tag-weights", weights)
        simplear("tokenize", "--meta", work / f"{name}_data" / "meta.jsonl", "--output", work / f"{name}_tok",
                 "--preset", recipe.preset, "--no-progress")
    prompts = work / "pretrain_data" / "evaluation_metadata.jsonl"
    stages = {}
    if score_init:
        stages["init"] = evaluate(recipe, ["--random-init", "--preset", recipe.preset], prompts, work / "eval_init")
    seconds = train(recipe, "pretrain", work / "pretrain_tok", work / "pretrain", [])
    stages["pretrain"] = {**evaluate(recipe, ["--model", work / "pretrain" / "final"], prompts, work / "eval_pretrain"),
                          "seconds": seconds}
    seconds = train(recipe, "sft", work / "sft_tok", work / "sft", [str(work / "pretrain" / "final")])
    stages["sft"] = {**evaluate(recipe, ["--model", work / "sft" / "final"], prompts, work / "eval_sft"),
                     "seconds": seconds}
    print(json.dumps({"seed": recipe.seed, "stages": stages}), file=sys.stderr, flush=True)
    return {"minutes": (stages["pretrain"]["seconds"] + stages["sft"]["seconds"]) / 60, "stages": stages,
            "prompts": sum(1 for _ in prompts.open())}


def main() -> None:
    """Each seed's data, pretrain and SFT, scored; print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/shapes_sft", help="scratch directory, emptied first so nothing resumes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="demo seeds (ShapesRecipe.seeded)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override a recipe field, e.g. --set pretrain_steps=400")
    parser.add_argument("--score-init", action="store_true", help="also score the random init")
    parser.add_argument("--out", default="bench/results/shapes_sft.json")
    args = parser.parse_args()
    overrides = {field: json.loads(value) for field, value in (item.split("=", 1) for item in args.set)}
    base = SHAPES_RECIPES["full"].model_copy(update=overrides)
    runs = []
    for seed in args.seeds:
        recipe = ShapesRecipe.model_validate(base.seeded(seed).model_dump())
        runs.append({"seed": seed, **run_seed(recipe, Path(args.work) / f"seed{seed}", args.score_init)})
    worst = {stage: min(run["stages"][stage]["overall"] for run in runs) for stage in ("pretrain", "sft")}
    summary = {
        "bench": "shapes_sft", "preset": base.preset, "minutes": runs[0]["minutes"], "stages": runs[0]["stages"],
        "seeds": [{key: run[key] for key in ("seed", "minutes", "stages")} for run in runs],
        "min_overall": worst, "ratio_min_sft_to_bar": worst["sft"] / SFT_BAR, "prompts": runs[0]["prompts"],
        "images_per_prompt": base.eval_images_per_prompt, "recipe": base.model_dump(exclude_defaults=True),
    }
    emit(summary, args.out)


if __name__ == "__main__":
    main()

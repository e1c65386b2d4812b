"""Quality on the shapes benchmark: tiny preset, pretrain then SFT on 2 CPU cores, scored before and after each stage.

Runs the real commands (`simplear shapes`, `tokenize`, `train` under torchrun, `evaluate --score-shapes`) on
held-out GenEval-style prompts with fixed seeds, and writes `bench/results/shapes_sft.json`:
{"preset", "minutes", "stages": {"init"|"pretrain"|"sft": {<tag>: score, "overall": score, "seconds"?}}, ...}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from simplear.config import SHAPES_RECIPES

SAMPLING = ["--cfg-scale", "5", "--negative-prompt", "", "--seed", "1000"]
RECIPE = SHAPES_RECIPES["full"]
OPTIMISATION = ["--lr-schedule", RECIPE.train_lr_schedule, "--weight-decay", str(RECIPE.train_weight_decay),
                "--loss-on", RECIPE.train_loss_on]
"""The shapes recipe's schedule, weight decay and loss positions, as the lifecycle pipeline passes them."""


def simplear(*args: str, ranks: int = 1) -> str:
    """Run a simplear command (under torchrun for several ranks) and return its stdout."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks)] if ranks > 1 \
        else [sys.executable]
    done = subprocess.run([*launcher, "-m", "simplear.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"simplear {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def evaluate(model: list[str], prompts: Path, out: Path, n: int) -> dict:
    """Per-tag and overall scores of a model on the held-out prompts."""
    stdout = simplear("evaluate", *model, "--prompts", str(prompts), "--out", str(out), "--n", str(n),
                      "--score-shapes", "--no-progress", "--batch-size", "64", *SAMPLING)
    scores = json.loads(stdout.strip().splitlines()[-1])
    return {**scores["per_tag"], "overall": scores["overall"]}


def train(stage: str, data: Path, out: Path, steps: int, lr: float, init: list[str]) -> float:
    """Train one stage on 2 ranks and return its wall-clock seconds."""
    start = time.perf_counter()
    simplear("train", "--stage", stage, "--data", str(data), "--output", str(out), "--max-steps", str(steps),
             "--batch-size", "16", "--learning-rate", str(lr), "--warmup-steps", str(max(1, steps // 20)),
             "--save-steps", str(steps), "--logging-steps", "25", "--no-tensorboard", *OPTIMISATION, *init, ranks=2)
    return time.perf_counter() - start


def main() -> None:
    """Data, init score, pretrain, score, SFT, score; print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/shapes_sft", help="scratch directory, emptied first so nothing resumes")
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--sft-steps", type=int, default=250)
    parser.add_argument("--n", type=int, default=4, help="images per held-out prompt")
    parser.add_argument("--out", default="bench/results/shapes_sft.json")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    simplear("shapes", "--out", str(work / "pretrain_data"), "--n", "20000", "--seed", "0", "--eval-per-tag", "12")
    simplear("shapes", "--out", str(work / "sft_data"), "--n", "6000", "--seed", "11", "--eval-per-tag", "12")
    prompts = work / "pretrain_data" / "evaluation_metadata.jsonl"
    for name in ("pretrain", "sft"):
        simplear("tokenize", "--meta", str(work / f"{name}_data" / "meta.jsonl"), "--output", str(work / f"{name}_tok"),
                 "--preset", "tiny", "--no-progress")

    stages = {"init": evaluate(["--random-init", "--preset", "tiny"], prompts, work / "eval_init", args.n)}
    seconds = train("pretrain", work / "pretrain_tok", work / "pretrain", args.pretrain_steps, 1e-3, [])
    stages["pretrain"] = {**evaluate(["--model", str(work / "pretrain" / "final")], prompts, work / "eval_pretrain",
                                     args.n), "seconds": seconds}
    seconds = train("sft", work / "sft_tok", work / "sft", args.sft_steps, 3e-4,
                    ["--init", "checkpoint", "--init-from", str(work / "pretrain" / "final")])
    stages["sft"] = {**evaluate(["--model", str(work / "sft" / "final")], prompts, work / "eval_sft", args.n),
                     "seconds": seconds}
    result = {
        "preset": "tiny", "minutes": (stages["pretrain"]["seconds"] + stages["sft"]["seconds"]) / 60,
        "stages": stages, "prompts": sum(1 for _ in prompts.open()), "images_per_prompt": args.n,
        "sampling": {"cfg_scale": 5.0, "negative_prompt": "<|t2i|><|soi|> (the CFG-dropped prompt)", "seed": 1000},
        "steps": {"pretrain": args.pretrain_steps, "sft": args.sft_steps, "batch": "2 ranks x 16"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

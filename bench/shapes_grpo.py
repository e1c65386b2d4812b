"""Proof that GRPO learns, per policy: held-out shapes score of an SFT model before and after a GRPO run.

Evaluates `--init-from` on the held-out prompts exactly as `simplear evaluate --score-shapes` does in
bench/shapes_sft.py (same prompts, 4 images per prompt, seeds 1000 + 4 i + j, CFG 5 against the CFG-dropped prompt),
trains GRPO with the `geneval_shapes` reward for `--max-steps` steps (at most `--minutes`) through the chosen rollout
engine (engine: in_process, or http-torch / http-vllm as the rollout server reports), evaluates the final model
again, and writes `{"minutes", "engine", "policy", "before", "after", "gain",
"reward_curve", ...}` into `--out`, one object per (engine, policy), a list when several have run.
`--policy plain` samples rollouts without CFG and trains the model's own distribution (upstream's GRPO); `guided`
samples them as the evaluation does (CFG 5 against the CFG-dropped prompt) and trains the guided distribution.
Both use the evaluation's prompt prefix and no KL, and the same steps and seeds. `--policy both` runs the two.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path

from simplear.config import GRPOTrainConfig, RewardSpec, RolloutSampling, SamplingConfig, get_preset
from simplear.data.shapes import BenchmarkSummary
from simplear.eval.geneval_layout import read_geneval_prompts
from simplear.eval.geneval_run import run_geneval
from simplear.model.prompt import GENERATION_PREFIX
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.sampler import Sampler
from simplear.store import Store
from simplear.train.grpo.trainer import train_grpo
from simplear.vision import load_visual_tokenizer

IMAGES_PER_PROMPT = 4


def evaluate(model_dir: str, prompts_uri: str, out: str, sampling: SamplingConfig, preset: str) -> dict:
    """Per-tag and overall shapes accuracy of a model on the held-out prompts, GenEval-style."""
    model = SimpleARModel.load(model_dir)
    vision = model.vision or get_preset(preset).vision
    tokenizer = load_visual_tokenizer(vision, encoder=False)
    summary: BenchmarkSummary = run_geneval(
        Sampler(model), tokenizer, read_geneval_prompts(Store(), prompts_uri), out, IMAGES_PER_PROMPT, sampling,
        vision.grid, batch_size=64, score_shapes=True, progress=False,
    )
    return {**summary.per_tag, "overall": summary.overall}


def grpo_config(args: argparse.Namespace, work: Path, policy: str) -> GRPOTrainConfig:
    """The GRPO run: shapes prompts (short captions), the exact shapes reward, rollouts of the given policy."""
    guidance = {"cfg_scale": 1.0} if policy == "plain" else {}
    return GRPOTrainConfig(
        prompts=args.prompts, caption=args.caption, output=str(work / "grpo"), init_from=args.init_from,
        preset=args.preset, rewards=(RewardSpec(name="geneval_shapes"),), rollout=args.engine,
        rollout_url=args.rollout_url, policy=policy, prompt_prefix=GENERATION_PREFIX,
        sampling=RolloutSampling(**{**sampling_config(args).model_dump(exclude={"repetition_penalty"}), **guidance}),
        num_generations=args.num_generations, batch_size=args.batch_size, num_iterations=args.num_iterations,
        max_steps=args.max_steps, max_minutes=args.minutes, learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio, beta=args.beta, save_steps=args.save_steps, tensorboard=False,
        scratch=str(work / "scratch"), seed=args.seed,
    )


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    """Sampling of the evaluation and of the rollouts (whose seeds derive from this one)."""
    return SamplingConfig(cfg_scale=args.cfg_scale, negative_prompt=args.negative_prompt, seed=args.seed)


def write_result(path: Path, result: dict) -> None:
    """Put this result into the file, replacing an earlier one of the same engine and policy; a list if several.

    Entries without a policy, from before the loss scored the sampled policy, are dropped: they trained neither.
    """
    earlier = json.loads(path.read_text()) if path.exists() else []
    key = (result["engine"], result["policy"])
    entries = [e for e in (earlier if isinstance(earlier, list) else [earlier])
               if (e["engine"], e.get("policy")) != key and "policy" in e]
    entries.append(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries[0] if len(entries) == 1 else entries, indent=2) + "\n")


def engine_label(args: argparse.Namespace) -> str:
    """in_process, or http-<engine> with the engine the rollout server reports (torch or vllm)."""
    if args.engine == "in_process":
        return "in_process"
    with urllib.request.urlopen(f"{args.rollout_url.rstrip('/')}/health", timeout=60) as answer:
        return f"http-{json.load(answer)['engine']}"


def run_policy(args: argparse.Namespace, policy: str, before: dict) -> dict:
    """Train one policy from the SFT model, evaluate the result, add it to the JSON."""
    work = args.work / policy
    started = time.monotonic()
    result = train_grpo(grpo_config(args, work, policy), Store())
    minutes = (time.monotonic() - started) / 60
    after = evaluate(result.final, args.eval_prompts, str(work / "after"), sampling_config(args), args.preset)
    entry = {
        "minutes": round(minutes, 2), "engine": engine_label(args), "policy": policy, "before": before, "after": after,
        "gain": after["overall"] - before["overall"], "reward_curve": result.reward_curve, "steps": result.steps,
        "init_from": args.init_from,
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out", "init_from", "policy")},
    }
    print(json.dumps({"policy": policy, "minutes": entry["minutes"], "steps": result.steps, "after": after,
                      "gain": entry["gain"]}), flush=True)
    write_result(args.out, entry)
    return entry


def main() -> None:
    """Evaluate, then train and evaluate each policy, writing the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init-from", required=True, help="the shapes SFT model (directory or store URI)")
    parser.add_argument("--prompts", required=True, help="training prompts: the shapes meta.jsonl")
    parser.add_argument("--eval-prompts", required=True, help="held-out evaluation_metadata.jsonl")
    parser.add_argument("--work", type=Path, required=True, help="directory for images, checkpoints and logs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/shapes_grpo.json"))
    parser.add_argument("--engine", choices=("in_process", "http"), default="in_process")
    parser.add_argument("--rollout-url", help="rollout server for --engine http")
    parser.add_argument("--policy", choices=("plain", "guided", "both"), default="both")
    parser.add_argument("--minutes", type=float, default=60.0, help="GRPO time limit (a safety net: same steps)")
    parser.add_argument("--preset", default="tiny", help="visual tokenizer of a model without vision.json")
    parser.add_argument("--caption", choices=("short", "long", "mixed"), default="short")
    parser.add_argument("--cfg-scale", type=float, default=5.0, help="rollouts and evaluation (as shapes_sft.py)")
    parser.add_argument("--negative-prompt", default="", help="'' = the CFG-dropped prompt (as shapes_sft.py)")
    parser.add_argument("--seed", type=int, default=1000, help="evaluation seed (as shapes_sft.py) and run seed")
    parser.add_argument("--num-generations", type=int, default=8, help="8: more groups whose images disagree")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--num-iterations", type=int, default=2, help="updates per rollout batch")
    parser.add_argument("--max-steps", type=int, default=64, help="length of the LR schedule")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="a tiny model takes a large step")
    parser.add_argument("--warmup-ratio", type=float, default=0.05)
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--save-steps", type=int, default=25)
    args = parser.parse_args()

    before = evaluate(args.init_from, args.eval_prompts, str(args.work / "before"), sampling_config(args), args.preset)
    print(json.dumps({"before": before}), flush=True)
    runs = {policy: run_policy(args, policy, before)
            for policy in (("plain", "guided") if args.policy == "both" else (args.policy,))}
    if len(runs) == 2:
        plain, guided = runs["plain"], runs["guided"]
        print(json.dumps({"guided_minus_plain_gain": guided["gain"] - plain["gain"],
                          "guided_over_plain_minutes": guided["minutes"] / plain["minutes"]}), flush=True)


if __name__ == "__main__":
    main()

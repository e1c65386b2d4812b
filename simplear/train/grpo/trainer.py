"""`simplear train --stage grpo`: trl's GRPOTrainer fed by a RolloutClient, checkpointed to and resumed from the store.

Why trl's GRPOTrainer itself and not a trainer of our own on trl's pieces: with a `rollout_func` it takes rollouts
from anywhere, and everything else GRPO needs is trl's tested code: groups of `num_generations`, advantages
normalised per group, the clipped ratio and its loss variants, the KL to a reference model, per-reward and KL / clip
logging, and, through the HF Trainer it extends, optimizer, schedule, DDP, checkpoints and resume. What is ours: the
rollout function (weights pushed to the RolloutClient, CFG sampling, images decoded for the rewards), the rewards,
the prompt source, and one override that makes the prompt order survive a resume (resumable_order.py).
trl's policy log-probabilities are the conditional model's over its whole vocabulary, while the sampler draws only
among visual codes; after SFT the model puts (almost) all of its mass on codes after `<|soi|>`, so the two agree.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from simplear.config import GRPOTrainConfig, VisionConfig
from simplear.model.simplear_lm import QWEN2_ARCHITECTURE, SimpleARModel
from simplear.store import Store, is_s3, join
from simplear.train import distributed
from simplear.train.checkpoint_callback import StoreCheckpointCallback
from simplear.train.grpo.metrics import GRPOMetricsCallback
from simplear.train.grpo.prompt_source import load_prompts, prompt_dataset
from simplear.train.grpo.reward_curve import draw_reward_curve, reward_curve
from simplear.train.grpo.rollout_clients import rollout_client
from simplear.train.grpo.rollout_function import RolloutFunction
from simplear.train.grpo.sampled_policy import SampledPolicy, SampledPolicyTrainer
from simplear.train.grpo.step_times import StepTimes
from simplear.train.grpo.time_limit import TimeLimitCallback
from simplear.train.grpo.trainer_args import grpo_arguments
from simplear.train.grpo.trl_rewards import TrlReward
from simplear.train.rewards import build_rewards
from simplear.train.run_support import (
    FINAL_DIR,
    METRICS_LOG,
    ResumePoint,
    TrainResult,
    find_resume_point,
    metric_sinks,
    rank_workdir,
)
from simplear.vision import load_visual_tokenizer
from simplear.vision.base import png_bytes

log = logging.getLogger(__name__)

REWARD_CURVE_PNG = "logs/reward_curve.png"

# The rollout_func API is marked experimental in trl; this package pins trl 1.16, whose contract it follows.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@dataclass(frozen=True)
class GRPOResult(TrainResult):
    """A finished GRPO run: final model, steps, resume point, and its reward curve (one point per logged step)."""

    reward_curve: list[dict]


def load_policy(config: GRPOTrainConfig, store: Store, local_dir: Path) -> SimpleARModel:
    """The SFT model in fp32, from a directory kept for the run (trl reloads it as the reference when beta > 0).

    trl rebuilds the reference by the architecture its config.json names; a released checkpoint names
    SimpARForCausalLM, which transformers does not know, so it is first saved again as Qwen2ForCausalLM.
    """
    source = config.init_from
    if is_s3(source):
        store.get_artifact(source, local_dir / "download")
        source = str(local_dir / "download")
    model = SimpleARModel.load(source)
    if model.lm.config.architectures != [QWEN2_ARCHITECTURE]:
        model.save(local_dir / "qwen2")
        model = SimpleARModel.load(local_dir / "qwen2")
    return model


def rollout_grid(config: GRPOTrainConfig, vision: VisionConfig) -> int:
    """Codes per side of a rollout image: at `config.resolution`, else the visual tokenizer's."""
    if config.resolution is None:
        return vision.grid
    if config.resolution % vision.downsample:
        raise ValueError(f"resolution {config.resolution} is not a multiple of the tokenizer's {vision.downsample} px")
    return config.resolution // vision.downsample


def save_reward_curve(store: Store, config: GRPOTrainConfig) -> list[dict]:
    """Draw the run's reward curve from its metric log into `<output>/logs/reward_curve.png`; return its points."""
    rows = [json.loads(line) for line in store.read(join(config.output, METRICS_LOG)).decode().splitlines()]
    curve = reward_curve(rows)
    store.write(join(config.output, REWARD_CURVE_PNG), png_bytes(draw_reward_curve(curve)))
    return curve


@dataclass(frozen=True)
class GRPORun:
    """A GRPO trainer ready to train, with the policy it trains, its rollouts and where it resumes from."""

    trainer: SampledPolicyTrainer
    model: SimpleARModel
    rollouts: RolloutFunction
    resume: ResumePoint | None
    workdir: Path


def build_run(config: GRPOTrainConfig, store: Store) -> GRPORun:
    """Load the policy, prompts and rewards, find the resume point, and assemble the trainer around a RolloutClient."""
    workdir = rank_workdir(config)
    model = load_policy(config, store, workdir / "init")
    model.vision = vision = model.visual_tokenizer_config(config.preset, config.init_from, config.vision_checkpoint)
    grid = rollout_grid(config, vision)
    args = grpo_arguments(config, workdir / "run", grid * grid)
    model.lm.to(args.device)
    resume = find_resume_point(store, config, workdir / "resume")
    times = StepTimes()
    decoder = load_visual_tokenizer(vision, device=str(args.device), encoder=False)
    rollouts = RolloutFunction(
        rollout_client(config, model, store), model, decoder, grid, config.sampling, times,
        prefix=config.prompt_prefix, shared_engine=config.rollout == "http",
    )
    rewards = build_rewards(config.rewards, args.device, store)
    callbacks = [
        StoreCheckpointCallback(store, config.output),
        GRPOMetricsCallback(metric_sinks(store, config, workdir, resume.step if resume else 0), times, rollouts),
    ]
    if config.max_minutes is not None:
        callbacks.append(TimeLimitCallback(config.max_minutes))
    trainer = SampledPolicyTrainer(
        policy=SampledPolicy.of_run(config, model),
        model=model.lm,
        reward_funcs=[TrlReward(reward, times) for reward in rewards],
        args=args,
        train_dataset=prompt_dataset(load_prompts(config.prompts, config.caption, config.seed, store)),
        processing_class=model.tokenizer,
        rollout_func=rollouts,
        callbacks=callbacks,
    )
    return GRPORun(trainer, model, rollouts, resume, workdir)


def train_grpo(config: GRPOTrainConfig, store: Store | None = None) -> GRPOResult:
    """Run (or resume) GRPO; every rank of a torchrun job calls this, each sampling its own share of the prompts."""
    store = store or Store()
    run = build_run(config, store)
    if run.resume and distributed.rank() == 0:
        log.info("resuming from %s (step %d)", run.resume.uri, run.resume.step)
    run.trainer.train(resume_from_checkpoint=str(run.resume.local_dir) if run.resume else None)
    final, curve = join(config.output, FINAL_DIR), []
    if distributed.rank() == 0:
        run.model.lm = run.trainer.accelerator.unwrap_model(run.trainer.model)
        run.model.save(final, store=store)
        curve = save_reward_curve(store, config)
        log.info("final model saved to %s", final)
    distributed.barrier()
    shutil.rmtree(run.workdir, ignore_errors=True)
    resumed_from = run.resume.uri if run.resume else None
    return GRPOResult(final, run.trainer.state.global_step, resumed_from, curve)

"""`simplear train --stage grpo`: trl's GRPOTrainer fed by a RolloutClient, checkpointed to and resumed from the store.

Why trl's GRPOTrainer itself and not a trainer of our own on trl's pieces: with a `rollout_func` it takes rollouts
from anywhere, and everything else GRPO needs is trl's tested code: groups of `num_generations`, advantages
normalised per group, the clipped ratio and its loss variants, the KL to a reference model, per-reward and KL / clip
logging, and, through the HF Trainer it extends, optimizer, schedule, DDP, checkpoints and resume. What is ours: the
rollout function (weights pushed to the RolloutClient, CFG sampling, images decoded for the rewards), the rewards,
the prompt source, and one override that makes the prompt order survive a resume (sampled_policy.py).
trl's policy log-probabilities are the conditional model's over its whole vocabulary, while the sampler draws only
among visual codes; after SFT the model puts (almost) all of its mass on codes after `<|soi|>`, so the two agree.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from trl import GRPOConfig

from simplear.config import GRPOTrainConfig, VisionConfig
from simplear.model.simplear_lm import QWEN2_ARCHITECTURE, SimpleARModel
from simplear.store import Store, is_s3, join
from simplear.train import job
from simplear.train.checkpoints import ResumePoint, StoreCheckpointCallback, find_resume_point
from simplear.train.grpo.metrics import GRPOMetricsCallback
from simplear.train.grpo.reward_curve import draw_reward_curve, reward_curve
from simplear.train.grpo.rewards import TrlReward, build_rewards
from simplear.train.grpo.rollout_function import RolloutFunction, load_prompts, prompt_dataset, rollout_client
from simplear.train.grpo.sampled_policy import SampledPolicy, SampledPolicyTrainer
from simplear.train.job import FINAL_DIR, TrainResult, rank_workdir, uses_bf16
from simplear.train.metrics import METRICS_LOG, StepTimes, metric_sinks
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


TRL_FIELDS = frozenset({
    "max_steps", "num_generations", "num_iterations", "learning_rate", "weight_decay", "max_grad_norm", "beta",
    "epsilon", "epsilon_high", "loss_type", "scale_rewards", "gradient_checkpointing", "save_steps", "logging_steps",
    "seed",
})
"""GRPOTrainConfig fields that are trl GRPOConfig fields of the same name and meaning: passed through as they are."""


def grpo_arguments(config: GRPOTrainConfig, output_dir: Path, num_codes: int) -> GRPOConfig:
    """The trainer's arguments: TRL_FIELDS as they are, the rest named as trl names them (the log-probabilities
    themselves come from sampled_policy.py)."""
    on_cpu = not torch.cuda.is_available()
    return GRPOConfig(
        **config.model_dump(include=set(TRL_FIELDS)),
        output_dir=str(output_dir),
        use_cpu=on_cpu,
        ddp_backend="gloo" if on_cpu and job.world_size() > 1 else None,
        bf16=uses_bf16(config),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_completion_length=num_codes,
        temperature=config.sampling.temperature,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio},
        warmup_steps=config.warmup_ratio,
        use_bias_correction_kl=config.kl_ratio_weighted,
        reward_weights=[reward.weight for reward in config.rewards],
        save_strategy="steps",
        report_to=[],
        data_seed=config.seed,
    )


class TimeLimitCallback(TrainerCallback):
    """After the first optimizer step that ends past `minutes` of training in this process, save and stop."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60.0
        self.started = 0.0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        """Start the clock (a resumed run gets its budget afresh)."""
        self.started = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> TrainerControl:
        """Stop after this step, with a checkpoint, when the time is up."""
        if time.monotonic() - self.started >= self.seconds:
            control.should_training_stop = True
            control.should_save = True
        return control


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
    if run.resume and job.rank() == 0:
        log.info("resuming from %s (step %d)", run.resume.uri, run.resume.step)
    run.trainer.train(resume_from_checkpoint=str(run.resume.local_dir) if run.resume else None)
    final, curve = join(config.output, FINAL_DIR), []
    if job.rank() == 0:
        run.model.lm = run.trainer.accelerator.unwrap_model(run.trainer.model)
        run.model.save(final, store=store)
        curve = save_reward_curve(store, config)
        log.info("final model saved to %s", final)
    job.barrier()
    shutil.rmtree(run.workdir, ignore_errors=True)
    resumed_from = run.resume.uri if run.resume else None
    return GRPOResult(final, run.trainer.state.global_step, resumed_from, curve)

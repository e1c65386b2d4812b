"""trl's GRPOConfig from our GRPOTrainConfig: schedule, groups, clipping, KL, rewards' weights, checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
from trl import GRPOConfig

from simplear.config import GRPOTrainConfig
from simplear.train import distributed
from simplear.train.run_support import uses_bf16


def grpo_arguments(config: GRPOTrainConfig, output_dir: Path, num_codes: int) -> GRPOConfig:
    """The trainer's arguments (the log-probabilities themselves come from sampled_policy.py)."""
    on_cpu = not torch.cuda.is_available()
    return GRPOConfig(
        output_dir=str(output_dir),
        use_cpu=on_cpu,
        ddp_backend="gloo" if on_cpu and distributed.world_size() > 1 else None,
        bf16=uses_bf16(config),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_generations=config.num_generations,
        max_completion_length=num_codes,
        temperature=config.sampling.temperature,
        num_iterations=config.num_iterations,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio},
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        beta=config.beta,
        use_bias_correction_kl=config.kl_ratio_weighted,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        reward_weights=[reward.weight for reward in config.rewards],
        gradient_checkpointing=config.gradient_checkpointing,
        save_strategy="steps",
        save_steps=config.save_steps,
        logging_steps=config.logging_steps,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
    )

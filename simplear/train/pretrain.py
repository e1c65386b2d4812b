"""Pretrain / SFT: HF Trainer with DeepSpeed ZeRO over token shards, checkpointed to and resumed from the store."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.integrations import unset_hf_deepspeed_config

from simplear.config import TrainConfig, VisionConfig
from simplear.model.simplear_lm import SimpleARModel
from simplear.store import Store, join
from simplear.train import distributed
from simplear.train.checkpoint_callback import StoreCheckpointCallback
from simplear.train.collator import CodeCollator
from simplear.train.deepspeed_config import deepspeed_config
from simplear.train.metrics_callback import MetricsCallback
from simplear.train.model_init import dataset_vision, initial_model
from simplear.train.run_support import (
    FINAL_DIR,
    TrainResult,
    find_resume_point,
    metric_sinks,
    rank_workdir,
    uses_bf16,
)
from simplear.train.token_dataset import TokenDataset, repeats_for
from simplear.train.token_records import TokenRecords

log = logging.getLogger(__name__)


def training_arguments(config: TrainConfig, output_dir: Path) -> TrainingArguments:
    """Trainer arguments of a run: DeepSpeed (over gloo when there is no GPU), schedule, checkpoints, token counting."""
    on_cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        deepspeed=deepspeed_config(config.zero_stage),
        use_cpu=on_cpu,
        ddp_backend="gloo" if on_cpu else None,
        bf16=uses_bf16(config),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_schedule,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        gradient_checkpointing=config.gradient_checkpointing,
        dataloader_num_workers=config.dataloader_workers,
        save_strategy="steps",
        save_steps=config.save_steps,
        logging_steps=config.logging_steps,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
    )


def save_final(
    trainer: Trainer, config: TrainConfig, store: Store, local_dir: Path, vision: VisionConfig | None
) -> str:
    """Gather the trained weights (all ranks take part under ZeRO-3); save them with `vision` as `<output>/final`.

    The model is built before the TrainingArguments, and reloaded after the DeepSpeed config is unset, so that
    neither load runs under ZeRO-3's collective `zero.Init` (rank 0 reloads alone).
    """
    trainer.save_model(str(local_dir))
    unset_hf_deepspeed_config()
    uri = join(config.output, FINAL_DIR)
    if distributed.rank() == 0:
        dtype = torch.bfloat16 if uses_bf16(config) else torch.float32
        final = SimpleARModel.load(local_dir, dtype=dtype)
        final.vision = vision
        final.save(uri, store=store)
        log.info("final model saved to %s", uri)
    distributed.barrier()
    return uri


def train(config: TrainConfig, store: Store | None = None) -> TrainResult:
    """Run (or resume) one pretrain or SFT stage; every rank of the torchrun job calls this."""
    store = store or Store()
    workdir = rank_workdir(config)
    records = TokenRecords.download(store, config.data, workdir / "data")
    vision = dataset_vision(config, store.read_manifest(config.data).get("tokens", {}))
    model = initial_model(config, records.codebook_size, store, vision)
    args = training_arguments(config, workdir / "run")
    resume = find_resume_point(store, config, workdir / "resume")
    if resume and distributed.rank() == 0:
        log.info("resuming from %s (step %d)", resume.uri, resume.step)
    sequences_per_step = config.batch_size * config.grad_accum * distributed.world_size()
    dataset = TokenDataset(
        records,
        model.tokenizer,
        model.vocab,
        seed=config.seed,
        p_drop_cond=config.p_drop_cond,
        sample_short=config.sample_short,
        max_prompt_tokens=config.max_prompt_tokens,
        repeats=repeats_for(len(records), config.max_steps, sequences_per_step),
    )
    trainer = Trainer(
        model=model.lm,
        args=args,
        train_dataset=dataset,
        data_collator=CodeCollator(model.vocab, pad_id=model.tokenizer.pad_token_id, loss_on=config.loss_on),
        processing_class=model.tokenizer,
        callbacks=[
            StoreCheckpointCallback(store, config.output),
            MetricsCallback(metric_sinks(store, config, workdir, resume.step if resume else 0)),
        ],
    )
    trainer.train(resume_from_checkpoint=str(resume.local_dir) if resume else None)
    final = save_final(trainer, config, store, workdir / FINAL_DIR, model.vision)
    shutil.rmtree(workdir, ignore_errors=True)
    return TrainResult(final=final, steps=trainer.state.global_step, resumed_from=resume.uri if resume else None)

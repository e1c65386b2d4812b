"""Pretrain / SFT: HF Trainer with DeepSpeed ZeRO over token shards, checkpointed to and resumed from the store."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.integrations import unset_hf_deepspeed_config

from simplear.config import TrainConfig
from simplear.model.simplear_lm import SimpleARModel
from simplear.store import Store, canonical, join
from simplear.train import distributed
from simplear.train.checkpoint_callback import StoreCheckpointCallback
from simplear.train.checkpoints import fetch_checkpoint, latest_checkpoint
from simplear.train.collator import CodeCollator
from simplear.train.deepspeed_config import deepspeed_config
from simplear.train.metrics_callback import MetricsCallback, MetricsSink
from simplear.train.metrics_jsonl import JsonlMetricsLog
from simplear.train.metrics_tensorboard import TensorBoardMetricsLog
from simplear.train.model_init import initial_model
from simplear.train.token_dataset import TokenDataset, repeats_for
from simplear.train.token_records import TokenRecords

log = logging.getLogger(__name__)

FINAL_DIR = "final"
METRICS_LOG = "logs/train.jsonl"
TENSORBOARD_DIR = "tensorboard"


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from: its step, store URI and this rank's local copy."""

    step: int
    uri: str
    local_dir: Path


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    final: str
    steps: int
    resumed_from: str | None


def uses_bf16(config: TrainConfig) -> bool:
    """True when the run trains in bf16: asked for, or `auto` with a GPU."""
    return config.precision == "bf16" or (config.precision == "auto" and torch.cuda.is_available())


def rank_workdir(config: TrainConfig) -> Path:
    """This rank's local directory for the run, emptied: nothing in it outlives the store copies."""
    run_id = hashlib.sha1(canonical(config.output).encode()).hexdigest()[:12]
    base = Path(config.scratch) if config.scratch else Path(tempfile.gettempdir()) / "simplear-train"
    workdir = base / run_id / f"rank-{distributed.rank()}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return workdir


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


def find_resume_point(store: Store, config: TrainConfig, local_dir: Path) -> ResumePoint | None:
    """Rank 0 picks the newest complete checkpoint; every rank downloads it. None on a fresh run."""
    found = latest_checkpoint(store, config.output) if distributed.rank() == 0 else None
    latest = distributed.broadcast_from_rank0(found)
    if latest is None:
        return None
    step, uri = latest
    return ResumePoint(step, uri, fetch_checkpoint(store, uri, local_dir / uri.rstrip("/").rsplit("/", 1)[-1]))


def metric_sinks(store: Store, config: TrainConfig, workdir: Path, resume_step: int) -> list[MetricsSink]:
    """Rank 0's metric logs (JSONL, and TensorBoard unless turned off); none on other ranks."""
    if distributed.rank() != 0:
        return []
    sinks: list[MetricsSink] = [JsonlMetricsLog(store, join(config.output, METRICS_LOG), resume_step)]
    if config.tensorboard:
        tb_uri = join(config.output, TENSORBOARD_DIR)
        sinks.append(TensorBoardMetricsLog(store, tb_uri, workdir / TENSORBOARD_DIR, resume_step))
    return sinks


def save_final(trainer: Trainer, config: TrainConfig, store: Store, local_dir: Path) -> str:
    """Gather the trained weights (every rank takes part under ZeRO-3) and save them as `<output>/final`.

    The model is built before the TrainingArguments, and reloaded after the DeepSpeed config is unset, so that
    neither load runs under ZeRO-3's collective `zero.Init` (rank 0 reloads alone).
    """
    trainer.save_model(str(local_dir))
    unset_hf_deepspeed_config()
    uri = join(config.output, FINAL_DIR)
    if distributed.rank() == 0:
        dtype = torch.bfloat16 if uses_bf16(config) else torch.float32
        SimpleARModel.load(local_dir, dtype=dtype).save(uri, store=store)
        log.info("final model saved to %s", uri)
    distributed.barrier()
    return uri


def train(config: TrainConfig, store: Store | None = None) -> TrainResult:
    """Run (or resume) one pretrain or SFT stage; every rank of the torchrun job calls this."""
    store = store or Store()
    workdir = rank_workdir(config)
    records = TokenRecords.download(store, config.data, workdir / "data")
    model = initial_model(config, records.codebook_size, store)
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
        data_collator=CodeCollator(model.vocab, pad_id=model.tokenizer.pad_token_id),
        processing_class=model.tokenizer,
        callbacks=[
            StoreCheckpointCallback(store, config.output),
            MetricsCallback(metric_sinks(store, config, workdir, resume.step if resume else 0)),
        ],
    )
    trainer.train(resume_from_checkpoint=str(resume.local_dir) if resume else None)
    final = save_final(trainer, config, store, workdir / FINAL_DIR)
    shutil.rmtree(workdir, ignore_errors=True)
    return TrainResult(final=final, steps=trainer.state.global_step, resumed_from=resume.uri if resume else None)

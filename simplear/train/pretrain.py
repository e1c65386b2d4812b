"""Pretrain / SFT: HF Trainer with DeepSpeed ZeRO over token shards, checkpointed to and resumed from the store."""

from __future__ import annotations

import json
import logging
import shutil
from importlib import resources
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.integrations import unset_hf_deepspeed_config

from simplear.config import PRESETS, TrainConfig, VisionConfig, get_preset
from simplear.model.prompt import TRAINING_PREFIX_SETS
from simplear.model.simplear_lm import CODEBOOK_KEY, SimpleARModel
from simplear.store import Store, join
from simplear.train import job
from simplear.train.checkpoints import StoreCheckpointCallback, find_resume_point
from simplear.train.job import FINAL_DIR, TrainResult, rank_workdir, uses_bf16
from simplear.train.metrics import MetricsCallback, metric_sinks
from simplear.train.token_data import CodeCollator, TokenDataset, TokenRecords, repeats_for

log = logging.getLogger(__name__)


def deepspeed_config(zero_stage: int, reduce_bucket_size: int = 0) -> dict:
    """A fresh copy of the packaged DeepSpeed config for ZeRO stage 2 or 3, with `reduce_bucket_size` gradient elements
    per collective (0 leaves transformers' 'auto': hidden_size^2, transformers/integrations/deepspeed.py
    `trainer_config_finalize`)."""
    if zero_stage not in (2, 3):
        raise ValueError(f"no packaged DeepSpeed config for ZeRO stage {zero_stage}; use 2 or 3")
    config = json.loads(resources.files("simplear.train").joinpath("deepspeed", f"zero{zero_stage}.json").read_text())
    if reduce_bucket_size:
        config["zero_optimization"]["reduce_bucket_size"] = reduce_bucket_size
    return config


def dataset_vision(config: TrainConfig, tokens: dict) -> VisionConfig:
    """The visual tokenizer a token dataset was made with (its manifest's `tokens` block): the preset's when of the
    same kind, else the first preset's of that kind, at the dataset's resolution and with its checkpoint."""
    vision = get_preset(config.preset).vision
    kind = tokens.get("vision", vision.kind)
    if kind != vision.kind:
        vision = next(preset.vision for preset in PRESETS.values() if preset.vision.kind == kind)
    update = {"resolution": tokens.get("resolution", vision.resolution)}
    if tokens.get("vision_checkpoint"):
        update["checkpoint"] = tokens["vision_checkpoint"]
    return VisionConfig(**{**vision.model_dump(), **update})


def initial_model(config: TrainConfig, codebook_size: int, store: Store,
                  vision: VisionConfig | None = None) -> SimpleARModel:
    """The fp32 model `config.init` names, checked to hold the dataset's codes; without vision.json, `vision` (the
    token dataset's visual tokenizer) or else the preset's."""
    if config.init == "random":
        preset = get_preset(config.preset)
        if config.shape is not None:
            preset = preset.model_copy(update={"shape": config.shape})
        if preset.vision.codebook_size != codebook_size:
            raise ValueError(
                f"preset {preset.name!r} has {preset.vision.codebook_size} visual codes but the token dataset "
                f"{config.data} has {codebook_size}"
            )
        model = SimpleARModel.random_init(preset, seed=config.seed)
    elif config.init == "text_lm":
        model = SimpleARModel.from_text_lm_dir(str(config.init_from), codebook_size, store=store)
    else:
        model = SimpleARModel.load(str(config.init_from), store=store)
        if model.vocab.codebook_size != codebook_size:
            raise ValueError(
                f"{config.init_from} writes {model.vocab.codebook_size} visual codes but the token dataset "
                f"{config.data} has {codebook_size}"
            )
    model.vision = model.visual_tokenizer_config(config.preset, str(config.init_from or "the random model"),
                                                 fallback=vision)
    model.lm.config.architectures = ["Qwen2ForCausalLM"]
    setattr(model.lm.config, CODEBOOK_KEY, model.vocab.codebook_size)
    model.lm.train()
    return model


def training_arguments(config: TrainConfig, output_dir: Path) -> TrainingArguments:
    """Trainer arguments of a run: DeepSpeed (over gloo when there is no GPU), schedule, checkpoints, token counting."""
    on_cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        deepspeed=deepspeed_config(config.zero_stage, config.reduce_bucket_size),
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
        adam_beta2=config.adam_beta2,
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
    if job.rank() == 0:
        dtype = torch.bfloat16 if uses_bf16(config) else torch.float32
        final = SimpleARModel.load(local_dir, dtype=dtype)
        final.vision = vision
        final.save(uri, store=store)
        log.info("final model saved to %s", uri)
    job.barrier()
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
    if resume and job.rank() == 0:
        log.info("resuming from %s (step %d)", resume.uri, resume.step)
    sequences_per_step = config.batch_size * config.grad_accum * job.world_size()
    dataset = TokenDataset(
        records,
        model.tokenizer,
        model.vocab,
        seed=config.seed,
        p_drop_cond=config.p_drop_cond,
        sample_short=config.sample_short,
        max_prompt_tokens=config.max_prompt_tokens,
        repeats=repeats_for(len(records), config.max_steps, sequences_per_step),
        prefixes=TRAINING_PREFIX_SETS[config.prompt_prefixes],
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

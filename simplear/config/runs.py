"""Run config: tokenize, pretrain / SFT and GRPO runs, and the pipeline recipes that size them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from simplear.config.presets import ModelShape, Strict, VisionConfig, get_preset
from simplear.config.serving import SamplingConfig


class TokenizeConfig(Strict):
    """Meta files to token shards: which images, at what resolution, with which visual tokenizer."""

    meta: str = Field(description="meta file (JSON, JSONL) or mixing YAML, local path or store URI")
    output: str = Field(description="token dataset root, local path or store URI")
    vision: VisionConfig
    shard_size: int = Field(default=1000, gt=0)
    min_size: int | None = Field(
        default=None, ge=0, description="drop images whose short edge is below this; None = the resolution"
    )
    seed: int = 0


class TrainConfig(Strict):
    """Pretrain or SFT on token shards: data, initial model, optimisation, checkpoints and logging.

    Optimisation defaults are upstream's (wdrink/SimpleAR docs/TRAIN.md, the pretrain and SFT command): AdamW at a
    constant LR of 1e-4 without warmup, weight decay 0.01, and the loss on every token, prompt text included
    (simpar/train/preprocess.py `preprocess_t2i`: labels are a copy of input_ids; padding is ignored).
    The shapes recipe sets its own, explicitly (ShapesRecipe.train_*).
    """

    stage: Literal["pretrain", "sft"]
    data: str = Field(description="token dataset root (complete: has manifest.json), local path or store URI")
    output: str = Field(description="run root: checkpoints/, logs/, tensorboard/ and final/ go under it")
    init: Literal["random", "text_lm", "checkpoint"] = Field(default="random", description="what the model starts from")
    init_from: str | None = Field(default=None, description="text LM directory or previous stage's model URI")
    preset: str = Field(default="tiny", description="model shape of a random init, visual tokenizer of the data")
    shape: ModelShape | None = Field(default=None, description="transformer shape of a random init; None = preset's")
    zero_stage: Literal[2, 3] = Field(default=2, description="DeepSpeed ZeRO stage")
    reduce_bucket_size: int = Field(
        default=50_000_000, ge=0,
        description="gradient elements ZeRO reduces per collective; 0 = transformers' 'auto', hidden_size^2 (16,384 "
                    "for the tiny preset: 65 collectives a step, a fifth of its step time on 2 CPU ranks)",
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(default="auto", description="auto: bf16 on GPU, fp32 on CPU")
    max_steps: int = Field(gt=0, description="optimizer steps to train for")
    batch_size: int = Field(default=8, gt=0, description="sequences per device per micro-step")
    grad_accum: int = Field(default=1, gt=0, description="micro-steps per optimizer step")
    learning_rate: float = Field(default=1e-4, gt=0)
    lr_schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    adam_beta2: float = Field(default=0.999, gt=0, lt=1, description="AdamW second-moment decay (upstream: the HF "
                                                                      "Trainer's 0.999)")
    loss_on: Literal["all", "codes"] = Field(
        default="all", description="all: every token after the first, prompt text included (upstream's); codes: codes"
    )
    max_grad_norm: float = Field(default=1.0, gt=0)
    p_drop_cond: float = Field(default=0.1, ge=0, le=1, description="share of prompts dropped to <|t2i|><|soi|>")
    sample_short: bool = Field(default=True, description="pick the short or long caption at random; False = long")
    prompt_prefixes: Literal["upstream", "generation"] = Field(
        default="upstream", description="upstream: a random prefix of upstream's list before each caption; generation: "
                                        "always the generation prefix"
    )
    max_prompt_tokens: int = Field(default=128, ge=2, description="longer prompts keep their head and <|soi|>")
    gradient_checkpointing: bool = Field(default=False, description="recompute activations in the backward pass")
    dataloader_workers: int = Field(default=0, ge=0)
    save_steps: int = Field(default=500, gt=0, description="checkpoint to the store every this many steps")
    logging_steps: int = Field(default=10, gt=0, description="write a metrics row every this many steps")
    tensorboard: bool = Field(default=True, description="write TensorBoard event files beside the JSONL metrics")
    scratch: str | None = Field(default=None, description="local directory for this rank's files; None = temp dir")
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.init == "random" and self.init_from is not None:
            raise ValueError("init_from is only for init 'text_lm' or 'checkpoint'; a random init starts from nothing")
        if self.init != "random" and not self.init_from:
            raise ValueError(f"init {self.init!r} needs init_from: the directory or URI to start from")
        if self.stage == "sft" and self.init == "random":
            raise ValueError("sft fine-tunes a model: set init 'checkpoint' (or 'text_lm') and init_from")
        get_preset(self.preset)
        return self


class RolloutSampling(SamplingConfig):
    """GRPO rollout sampling: without CFG unless asked for and without repetition penalty, as upstream's rollouts."""

    cfg_scale: float = Field(default=1.0, ge=0.0, le=100.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=100.0)


class RewardSpec(Strict):
    """One reward of a GRPO run: its registered name, its weight in the sum, and the checkpoints it reads."""

    name: str = Field(description="a registered reward: geneval_shapes, clip or aesthetic")
    weight: float = 1.0
    clip_model: str | None = Field(default=None, description="CLIP directory or store URI (clip, aesthetic)")
    aesthetic_head: str | None = Field(
        default=None, description="LAION aesthetic MLP as safetensors, path or store URI (aesthetic)"
    )
    batch_size: int = Field(default=32, gt=0, description="images scored together on the device")

    @classmethod
    def from_text(cls, text: str, clip_model: str | None = None, aesthetic_head: str | None = None) -> RewardSpec:
        """A reward from `name[:weight]`, given the CLIP model and aesthetic head where it reads them."""
        name, _, weight = text.strip().partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"reward {text!r}: the weight after ':' must be a number") from None
        return cls(name=name, weight=value, clip_model=clip_model if name in ("clip", "aesthetic") else None,
                   aesthetic_head=aesthetic_head if name == "aesthetic" else None)


class GRPOTrainConfig(Strict):
    """GRPO from an SFT model: rollouts in groups, group-normalised advantages, clipped ratio, KL to the SFT model.

    The loss is on the policy that sampled the rollouts (`policy`): `plain` samples without CFG and scores codes with
    the model's own distribution; `guided` samples with CFG and scores them with the guided distribution.
    Upstream's values (wdrink/SimpleAR simpar/configs/config_grpo_clip.yaml over trl 69ad852e's GRPOConfig, which its
    RL scripts pin): policy `plain` (trl's vLLM rollouts carry no CFG), prompt prefix "A photo of "
    (simpar/train/t2i_data.py), lr 1e-6, cosine to 0.1 of it after a 10% warmup, 4 generations per prompt,
    temperature 1.0, epsilon 0.2, one iteration, KL beta 0.04 (trl's default, not overridden there) as plain k3.
    Ours: `batch_size` 16 images per device (upstream 4 prompts x 4), rewards (upstream: CLIP).
    """

    stage: Literal["grpo"] = "grpo"
    prompts: str = Field(description="meta file (JSON, JSONL) or mixing YAML of captioned records, path or URI")
    caption: Literal["short", "long", "mixed"] = Field(
        default="mixed", description="which caption of a {short, long} record; mixed: one of the two per record"
    )
    output: str = Field(description="run root: checkpoints/, logs/, tensorboard/ and final/ go under it")
    init_from: str = Field(description="the SFT model to start from: directory or store URI")
    preset: str = Field(default="tiny", description="visual tokenizer of a model without vision.json")
    vision_checkpoint: str | None = Field(default=None, description="Cosmos tokenizer; None = the model's")
    resolution: int | None = Field(default=None, gt=0, description="rollout pixels per side; None = the tokenizer's")
    rewards: tuple[RewardSpec, ...] = (RewardSpec(name="geneval_shapes"),)
    rollout: Literal["in_process", "http"] = "in_process"
    rollout_url: str | None = Field(default=None, description="base URL of the rollout server (rollout http)")
    rollout_weight_sync: Literal["auto", "nccl", "store"] = Field(
        default="auto", description="auto: NCCL when trainer and server both run on CUDA, else the store reload"
    )
    rollout_sync_host: str = Field(default="127.0.0.1", description="this pod's address the server joins for NCCL")
    rollout_sync_port: int = Field(default=51216, gt=0, lt=65536, description="NCCL rendezvous port (trainer rank 0)")
    rollout_batch_size: int = Field(default=64, gt=0, description="images the in-process sampler decodes at once")
    policy: Literal["plain", "guided"] = Field(
        default="plain",
        description="plain: rollouts with CFG 1, the model's log-probabilities (upstream); guided: CFG rollouts, the "
                    "guided distribution's log-probabilities (both rows carry gradient)",
    )
    prompt_prefix: str = Field(default="A photo of ", description="put before every caption (upstream's)")
    sampling: RolloutSampling = Field(
        default=RolloutSampling(), description="rollout sampling; its seed is the base of every rollout's seed"
    )
    num_generations: int = Field(default=4, ge=2, description="images per prompt: one group")
    batch_size: int = Field(default=16, gt=0, description="images per device per micro-step")
    grad_accum: int = Field(default=1, gt=0, description="micro-steps per optimizer step")
    num_iterations: int = Field(default=1, gt=0, description="optimizer passes over each batch of rollouts")
    max_steps: int = Field(gt=0, description="optimizer steps to train for")
    max_minutes: float | None = Field(
        default=None, gt=0, description="stop (with a checkpoint) once this process has trained this long"
    )
    learning_rate: float = Field(default=1e-6, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="cosine decays to this share of the peak")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    beta: float = Field(default=0.04, ge=0, description="KL coefficient to the initial model; 0 loads no reference")
    kl_ratio_weighted: bool = Field(
        default=False, description="k3 KL weighted by the policy ratio (trl 1.16's default); False: plain k3 (upstream)"
    )
    epsilon: float = Field(default=0.2, gt=0, description="the ratio is clipped to [1 - epsilon, 1 + epsilon_high]")
    epsilon_high: float | None = Field(default=None, gt=0, description="None = epsilon")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = "grpo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    precision: Literal["auto", "bf16", "fp32"] = Field(default="auto", description="auto: bf16 on GPU, fp32 on CPU")
    gradient_checkpointing: bool = Field(default=False, description="recompute activations in the backward pass")
    save_steps: int = Field(default=50, gt=0, description="checkpoint to the store every this many steps")
    logging_steps: int = Field(default=1, gt=0, description="write a metrics row every this many steps")
    tensorboard: bool = Field(default=True, description="write TensorBoard event files beside the JSONL metrics")
    scratch: str | None = Field(default=None, description="local directory for this rank's files; None = temp dir")
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> GRPOTrainConfig:
        if self.rollout == "http" and not self.rollout_url:
            raise ValueError("rollout 'http' needs rollout_url: the rollout server's base URL")
        if self.sampling.temperature == 0:
            raise ValueError("GRPO samples its groups: sampling.temperature must be above 0")
        if self.policy == "plain" and self.sampling.cfg_scale != 1.0:
            raise ValueError(f"policy 'plain' samples without CFG (cfg_scale 1, as upstream), not "
                             f"{self.sampling.cfg_scale:g}; choose policy 'guided' to train on CFG rollouts")
        if self.policy == "guided" and self.sampling.cfg_scale == 1.0:
            raise ValueError("policy 'guided' trains on CFG rollouts: set sampling.cfg_scale other than 1")
        if self.sampling.repetition_penalty != 1.0:
            raise ValueError("GRPO's loss scores the sampled distribution without a repetition penalty (upstream's "
                             "rollouts apply none): leave sampling.repetition_penalty at 1")
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"batch_size x grad_accum ({self.batch_size} x {self.grad_accum}) must hold whole groups of "
                f"num_generations ({self.num_generations}) images"
            )
        if not self.rewards:
            raise ValueError("GRPO needs at least one reward")
        get_preset(self.preset)
        return self


SIMPLEAR_EVAL_SAMPLING = {"cfg_scale": 6.0, "temperature": 1.0, "top_k": 64_000, "top_p": 1.0}
"""Upstream's evaluation sampling: scripts/eval/bench_geneval.sh / bench_dpg.sh pass --cfg-scale 6.0 --temperature 1.0
--top_k 64000 --top_p 1.0 (the whole protocol: simplear.eval.protocols)."""
SIMPLEAR_EVAL_IMAGES_PER_PROMPT = 4
EvalProtocol = Literal["fixed", "simplear"]


class EvaluateConfig(Strict):
    """`simplear evaluate`: benchmark prompts to images in the benchmark's own layout, under a protocol: `fixed`
    samples as `sampling` says behind the fixed prefix; `simplear` is upstream's (simplear.eval.protocols)."""

    benchmark: Literal["geneval", "dpg"] = "geneval"
    protocol: EvalProtocol = Field(
        default="fixed", description="fixed: the given sampling behind the fixed prefix; simplear: upstream's (random "
                                     "prefixes, its negative prompt, CFG 6, top-k 64000, 4 images, GenEval reprompts)",
    )
    prompts: str = Field(description="geneval: evaluation_metadata.jsonl; dpg: a folder of <id>.txt (path or URI)")
    out: str = Field(description="output folder (path or store URI)")
    images_per_prompt: int = Field(default=4, gt=0, description="images per prompt (GenEval; DPG always tiles 4)")
    score_shapes: bool = Field(default=False, description="score with the exact shapes scorer (rank 0)")
    progress: bool = Field(default=True, description="show a progress bar")
    model: str | None = Field(default=None, description="checkpoint directory or store URI")
    random_init: bool = Field(default=False, description="random weights of the preset instead of a checkpoint")
    preset: str = Field(default="tiny", description="random init's shape; vision of a checkpoint without vision.json")
    vision_checkpoint: str | None = Field(default=None, description="Cosmos tokenizer directory or URI")
    resolution: int | None = Field(default=None, gt=0, description="pixels per side; None = the model's")
    device: str | None = Field(default=None, description="None = cuda when available, else cpu")
    batch_size: int = Field(default=16, gt=0, description="images decoded together")
    sampling: SamplingConfig = SamplingConfig()

    @model_validator(mode="after")
    def _consistent(self) -> EvaluateConfig:
        if (self.model is None) == (not self.random_init):
            raise ValueError("give a model (a checkpoint directory or URI) or random_init, and not both")
        if self.protocol == "simplear" and self.images_per_prompt != SIMPLEAR_EVAL_IMAGES_PER_PROMPT:
            raise ValueError(f"protocol simplear draws {SIMPLEAR_EVAL_IMAGES_PER_PROMPT} images per prompt")
        self.protocol_sampling()
        get_preset(self.preset)
        return self

    def protocol_sampling(self) -> SamplingConfig:
        """The sampling the protocol uses: as given (fixed), or upstream's with the given seed (simplear).

        Under `simplear` a setting that disagrees with upstream's is an error rather than silently replaced; top-k 0
        (keep every code) is accepted as equal to 64,000 (keep every code of the Cosmos codebook).
        """
        given = self.sampling
        if self.protocol == "fixed":
            return given
        wrong = [f"{name} {getattr(given, name):g}" for name, value in SIMPLEAR_EVAL_SAMPLING.items()
                 if getattr(given, name) != value and not (name == "top_k" and given.top_k == 0)]
        if given.negative_prompt is not None:
            wrong.append("a negative prompt")
        if wrong:
            raise ValueError(f"protocol simplear samples as upstream (CFG 6, temperature 1, top-k 64000, top-p 1, its "
                             f"own negative prompt); drop {', '.join(wrong)}")
        return SamplingConfig(**SIMPLEAR_EVAL_SAMPLING, seed=given.seed, repetition_penalty=given.repetition_penalty)


class ShapesRecipe(Strict):
    """Sizes of the shapes lifecycle (data, steps, evaluation sampling); fields are lifecycle pipeline parameters."""

    preset: str = "tiny"
    pretrain_images: int = Field(default=20_000, gt=0)
    pretrain_data_seed: int = 0
    sft_images: int = Field(default=6_000, gt=0)
    sft_data_seed: int = 11
    pretrain_tag_weights: str = Field(
        default="single_object:1,two_object:1,counting:1,colors:2,position:1,color_attr:2",
        description="pretrain data mix, tag:weight,...; '' = every tag once",
    )
    sft_tag_weights: str = Field(
        default="single_object:1,two_object:1,counting:2,colors:2,position:2,color_attr:2",
        description="SFT data mix (also GRPO's prompts), tag:weight,...",
    )
    eval_per_tag: int = Field(default=12, gt=0, description="held-out prompts per GenEval tag")
    procs_per_node: int = Field(default=2, ge=0, description="ranks per stage run; 0 = the pool's GPUs (1 locally)")
    batch_size: int = Field(
        default=8, gt=0, description="pretrain / SFT sequences per rank per step (8: twice the updates of 16 for the "
                                     "same compute, which the tiny model needs more than larger batches)"
    )
    pretrain_steps: int = Field(default=1000, gt=0)
    pretrain_learning_rate: float = Field(default=2e-3, gt=0)
    sft_steps: int = Field(default=400, gt=0)
    sft_learning_rate: float = Field(default=1e-3, gt=0)
    train_lr_schedule: str = Field(
        default="cosine", pattern="^(constant|constant_with_warmup|linear|cosine)$",
        description="pretrain / SFT schedule after a warmup of 5% of the steps (upstream: constant, no warmup)",
    )
    train_weight_decay: float = Field(default=0.0, ge=0, description="pretrain / SFT weight decay (upstream: 0.01)")
    train_adam_beta2: float = Field(
        default=0.95, gt=0, lt=1, description="pretrain / SFT AdamW beta2 (upstream: 0.999); at 0.999 the tiny model "
                                              "learns to draw but not to read the caption within the step budget"
    )
    train_loss_on: str = Field(
        default="all", pattern="^(all|codes)$",
        description="pretrain / SFT loss on every token, prompt text included (upstream's); on the codes only, the "
                    "tiny model reads colour words late or never (seed 2: pretrain 0.27 against 0.55)",
    )
    train_prompt_prefixes: str = Field(
        default="generation", pattern="^(upstream|generation)$",
        description="pretrain / SFT captions behind the generation prefix only (upstream: a random one of its list)",
    )
    grpo_steps: int = Field(default=32, gt=0)
    grpo_batch_size: int = Field(default=32, gt=0, description="rollout images per rank per step")
    grpo_num_generations: int = Field(default=8, ge=2)
    grpo_num_iterations: int = Field(default=2, gt=0)
    grpo_learning_rate: float = Field(default=2e-4, gt=0)
    grpo_max_minutes: float = Field(default=2.5, ge=0, description="GRPO time limit; 0 = none")
    grpo_policy: str = Field(
        default="guided", pattern="^(plain|guided)$",
        description="guided: rollouts and loss with the evaluation's CFG and negative prompt (upstream: plain)",
    )
    grpo_prompt_prefix: str = Field(
        default="A highly realistic image of ", description="GRPO prefix: the evaluation's (upstream: 'A photo of ')"
    )
    grpo_beta: float = Field(default=0.0, ge=0, description="GRPO KL coefficient (upstream: 0.04)")
    eval_protocol: str = Field(
        default="fixed", pattern="^(fixed|simplear)$", description="fixed: fixed prefix, cfg_scale, negative_prompt"
    )
    eval_images_per_prompt: int = Field(default=4, gt=0)
    cfg_scale: float = Field(default=3.0, ge=0)
    negative_prompt: str = Field(default="", description="'' = the CFG-dropped prompt as the unconditional row")
    seed: int = Field(default=1000, ge=0, description="model init, evaluation, serving check and GRPO seed")

    def seeded(self, run_seed: int) -> ShapesRecipe:
        """This recipe for demo seed `run_seed`: every data and run seed moved by it (seed 0 is the recipe itself)."""
        if run_seed < 0:
            raise ValueError(f"a demo seed is a whole number from 0, not {run_seed}")
        return self.model_copy(update={"pretrain_data_seed": self.pretrain_data_seed + run_seed,
                                       "sft_data_seed": self.sft_data_seed + run_seed, "seed": self.seed + run_seed})


SHAPES_RECIPES: dict[str, ShapesRecipe] = {
    "full": ShapesRecipe(),
    "quick": ShapesRecipe(
        pretrain_images=400, sft_images=200, eval_per_tag=1, procs_per_node=2, batch_size=8, pretrain_steps=12,
        sft_steps=6, grpo_steps=2, grpo_batch_size=8, grpo_num_generations=4, grpo_num_iterations=1,
        grpo_max_minutes=2.0, eval_images_per_prompt=2,
    ),
}


class TrainRecipe(Strict):
    """Defaults of the `simplear-train` pipeline on the user's data: upstream SimpleAR's optimisation, GRPO and
    evaluation (TrainConfig, GRPOTrainConfig and the `simplear` protocol cite where each comes from); steps and
    batch sizes are ours, to be sized to the data."""

    preset: str = Field(default="0.5B", description="visual tokenizer family (Cosmos) and serving limits")
    resolution: int = Field(default=0, ge=0, description="pixels per side of the tokenized images; 0 = the preset's")
    batch_size: int = Field(default=8, gt=0, description="pretrain / SFT sequences per rank per step")
    pretrain_steps: int = Field(default=10_000, gt=0)
    pretrain_learning_rate: float = Field(default=1e-4, gt=0)
    sft_steps: int = Field(default=2_000, gt=0)
    sft_learning_rate: float = Field(default=1e-4, gt=0)
    train_lr_schedule: str = Field(default="constant", pattern="^(constant|constant_with_warmup|linear|cosine)$")
    train_weight_decay: float = Field(default=0.01, ge=0)
    train_adam_beta2: float = Field(default=0.999, gt=0, lt=1)
    train_loss_on: str = Field(default="all", pattern="^(all|codes)$")
    train_prompt_prefixes: str = Field(default="upstream", pattern="^(upstream|generation)$")
    grpo_steps: int = Field(default=500, gt=0)
    grpo_batch_size: int = Field(default=16, gt=0, description="rollout images per rank per step")
    grpo_num_generations: int = Field(default=4, ge=2)
    grpo_num_iterations: int = Field(default=1, gt=0)
    grpo_learning_rate: float = Field(default=1e-6, gt=0)
    grpo_policy: str = Field(default="plain", pattern="^(plain|guided)$")
    grpo_prompt_prefix: str = "A photo of "
    grpo_beta: float = Field(default=0.04, ge=0)
    grpo_caption: str = Field(default="mixed", pattern="^(short|long|mixed)$")
    grpo_rewards: str = Field(default="clip", description="name[:weight], comma-separated: clip, aesthetic, ...")
    eval_protocol: str = Field(default="simplear", pattern="^(fixed|simplear)$")
    eval_images_per_prompt: int = Field(default=4, gt=0)
    cfg_scale: float = Field(default=6.0, ge=0)
    negative_prompt: str = ""
    seed: int = Field(default=0, ge=0)


TRAIN_RECIPE = TrainRecipe()

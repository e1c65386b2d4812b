"""The one typed configuration of the platform: model presets, vision, sampling and store settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel


class Strict(BaseModel):
    """Base for every config block: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelShape(Strict):
    """Transformer shape of a Qwen2 decoder."""

    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelShape:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must divide into num_heads {self.num_heads}, "
                f"which must divide into num_kv_heads {self.num_kv_heads}"
            )
        return self

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads


class PaletteColor(Strict):
    """One named flat colour of the palette tokenizer."""

    name: str
    rgb: tuple[int, int, int]


DEFAULT_PALETTE: tuple[PaletteColor, ...] = tuple(
    PaletteColor(name=name, rgb=rgb)
    for name, rgb in (
        ("white", (255, 255, 255)),
        ("black", (0, 0, 0)),
        ("gray", (128, 128, 128)),
        ("red", (230, 25, 75)),
        ("green", (60, 180, 75)),
        ("blue", (0, 130, 200)),
        ("yellow", (255, 225, 25)),
        ("orange", (245, 130, 48)),
        ("purple", (145, 30, 180)),
        ("cyan", (70, 240, 240)),
        ("pink", (240, 50, 230)),
        ("brown", (170, 110, 40)),
        ("lime", (210, 245, 60)),
        ("teal", (0, 128, 128)),
        ("navy", (0, 0, 128)),
        ("maroon", (128, 0, 0)),
    )
)


class VisionConfig(Strict):
    """Which visual tokenizer turns images into codes, and at what resolution."""

    kind: Literal["palette", "cosmos"]
    codebook_size: int = Field(gt=0)
    downsample: int = Field(gt=0)
    resolution: int = Field(gt=0)
    palette: tuple[PaletteColor, ...] = ()
    checkpoint: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> VisionConfig:
        if self.resolution % self.downsample:
            raise ValueError(f"resolution {self.resolution} is not a multiple of downsample {self.downsample}")
        if self.kind == "palette" and len(self.palette) != self.codebook_size:
            raise ValueError(f"palette has {len(self.palette)} colours but codebook_size is {self.codebook_size}")
        return self

    @property
    def grid(self) -> int:
        """Codes per image side."""
        return self.resolution // self.downsample

    @property
    def num_codes(self) -> int:
        """Codes per image."""
        return self.grid * self.grid


class Preset(Strict):
    """A named model size: transformer shape, text vocabulary and visual tokenizer."""

    name: str
    shape: ModelShape
    vision: VisionConfig
    text_vocab_size: int | None = Field(
        default=None,
        description="len(text tokenizer) incl. SimpleAR specials; None = whatever the offline tokenizer has",
    )


COSMOS_CODEBOOK_SIZE = 64_000
COSMOS_DOWNSAMPLE = 16
QWEN25_TEXT_VOCAB = 151_672  # Qwen2.5 tokenizer (151,665) + the 7 SimpleAR special tokens

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        shape=ModelShape(
            hidden_size=128,
            intermediate_size=512,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            rope_theta=10_000.0,
            max_position_embeddings=2048,
        ),
        vision=VisionConfig(
            kind="palette",
            codebook_size=len(DEFAULT_PALETTE),
            downsample=4,
            resolution=64,
            palette=DEFAULT_PALETTE,
        ),
    ),
    "0.5B": Preset(
        name="0.5B",
        shape=ModelShape(hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14, num_kv_heads=2),
        vision=VisionConfig(
            kind="cosmos", codebook_size=COSMOS_CODEBOOK_SIZE, downsample=COSMOS_DOWNSAMPLE, resolution=1024
        ),
        text_vocab_size=QWEN25_TEXT_VOCAB,
    ),
    "1.5B": Preset(
        name="1.5B",
        shape=ModelShape(hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2),
        vision=VisionConfig(
            kind="cosmos", codebook_size=COSMOS_CODEBOOK_SIZE, downsample=COSMOS_DOWNSAMPLE, resolution=1024
        ),
        text_vocab_size=QWEN25_TEXT_VOCAB,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a clear error listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


class SamplingConfig(Strict):
    """Per-request sampling parameters; defaults are the original SimpleAR's."""

    cfg_scale: float = Field(default=6.0, ge=0.0, le=100.0)
    temperature: float = Field(default=1.0, ge=0.0, le=100.0, description="0 means greedy")
    top_k: int = Field(default=0, ge=0, description="0 keeps every code")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = Field(default=0, ge=0, lt=2**63)
    negative_prompt: str | None = Field(default=None, description="None uses the fixed negative prompt")
    repetition_penalty: float | None = Field(
        default=None, gt=0.0, le=100.0,
        description="on the codes already drawn, before CFG; None: the checkpoint's generation_config.json (else 1)",
    )


class RolloutSampling(SamplingConfig):
    """GRPO rollout sampling: without CFG unless asked for and without repetition penalty, as upstream's rollouts."""

    cfg_scale: float = Field(default=1.0, ge=0.0, le=100.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=100.0)


class StoreSettings(Strict):
    """S3 endpoint and credentials, read from the same variables KServe's storage initializer uses."""

    endpoint: str | None = None
    access_key: str | None = None
    secret_key: SecretStr | None = None
    secure: bool = False
    region: str | None = None
    retry_seconds: float = Field(
        default=300.0, ge=0.0, description="how long transient S3 failures are retried, with backoff, before an error"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreSettings:
        """Settings from SIMPLEAR_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, SIMPLEAR_S3_SECURE and
        SIMPLEAR_S3_RETRY_SECONDS; pydantic's ValidationError when one holds an invalid value.

        The flag and the number are parsed by pydantic: SIMPLEAR_S3_SECURE takes true/false, 1/0, yes/no, on/off
        (any case) and refuses anything else; empty variables count as unset.
        """
        env = os.environ if env is None else env
        secret = env.get("AWS_SECRET_ACCESS_KEY")
        given = {field: env.get(name, "").strip() for field, (name, _) in STORE_ENV_TYPED.items()}
        return cls(
            endpoint=env.get("SIMPLEAR_S3_ENDPOINT") or None,
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=SecretStr(secret) if secret else None,
            region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or None,
            **{field: value for field, value in given.items() if value},
        )


STORE_ENV_TYPED = {
    "secure": ("SIMPLEAR_S3_SECURE", "true or false (also 1/0, yes/no, on/off)"),
    "retry_seconds": ("SIMPLEAR_S3_RETRY_SECONDS", "a number of seconds"),
}
"""The StoreSettings fields read from a typed environment variable: the variable, and what it takes."""


class CamelStrict(Strict):
    """Config block that also reads the camelCase keys Helm values and Kubernetes use."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


PoolName = Literal["tokenize", "train", "rollout", "serve", "cpu"]


class NodePool(CamelStrict):
    """Where one kind of workload runs: node selection, tolerations, affinity and accelerators per pod."""

    node_selector: dict[str, str] = {}
    tolerations: tuple[dict, ...] = ()
    affinity: dict | None = None
    gpu_resource: str = "nvidia.com/gpu"
    gpus: int = Field(default=0, ge=0)
    cpu: str = "1"
    memory: str = "4Gi"


class Images(CamelStrict):
    """Container image references of each role."""

    base: str
    train: str
    rollout: str
    serve: str
    pull_secrets: tuple[str, ...] = Field(default=(), description="docker-registry Secrets every stage pod pulls with")


class Scheduling(CamelStrict):
    """How stage runs queue and are admitted on a shared GPU cluster: Kueue, gang scheduling, priority (all optional).

    `gang` names the scheduler the training operator was started with (its --gang-scheduler-name): the operator then
    makes a PodGroup named after each PyTorchJob and ties the job's pods to it; a GRPO run's rollout Deployment joins
    the same PodGroup so the trainer and its rollout server are admitted as one gang.
    """

    kueue_queue: str = Field(default="", description="Kueue LocalQueue: kueue.x-k8s.io/queue-name on each PyTorchJob")
    gang: Literal["none", "volcano", "scheduler-plugins"] = "none"
    scheduler_name: str = Field(
        default="", description="schedulerName of gang-scheduled pods; empty: volcano or scheduler-plugins-scheduler"
    )
    queue: str = Field(default="", description="Volcano queue of the PodGroup (runPolicy.schedulingPolicy.queue)")
    schedule_timeout_seconds: int | None = Field(default=None, gt=0, description="how long a gang may wait")
    priority_class: str = Field(default="", description="PriorityClass of every stage pod; empty: the default")

    @model_validator(mode="after")
    def _consistent(self) -> Scheduling:
        if self.queue and self.gang != "volcano":
            raise ValueError("scheduling.queue is a Volcano queue: set gang volcano (Kueue takes kueueQueue)")
        if (self.scheduler_name or self.schedule_timeout_seconds) and self.gang == "none":
            raise ValueError("schedulerName and scheduleTimeoutSeconds are for gang scheduling: set gang")
        return self

    @property
    def gang_scheduler_name(self) -> str:
        """The schedulerName gang-scheduled pods carry (the operator's, unless set)."""
        defaults = {"volcano": "volcano", "scheduler-plugins": "scheduler-plugins-scheduler", "none": ""}
        return self.scheduler_name or defaults[self.gang]


class Serving(CamelStrict):
    """How a model is served the KServe way: the chart's ServingRuntime and what each InferenceService asks of it."""

    runtime: str = Field(description="the ServingRuntime (or ClusterServingRuntime) for model format simplear")
    cluster_runtime: bool = Field(default=False, description="the runtime is a ClusterServingRuntime")
    service_account: str = Field(description="predictor ServiceAccount listing the store Secret (KServe's link)")
    deployment_mode: Literal["Standard", "RawDeployment", "Knative", "Serverless"] = "Standard"
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] | None = Field(
        default=None, description="KServe autoscaling metric; None: KServe's default"
    )
    scale_target: int | None = Field(default=None, gt=0, description="target value of scale_metric per replica")
    timeout_seconds: int = Field(default=300, gt=0, description="request timeout (the server cancels at it too)")
    startup_seconds: int = Field(default=600, gt=0, description="how long loading the model may take")
    deployment_strategy: Literal["Recreate", "RollingUpdate"] = Field(
        default="Recreate", description="Recreate: a new revision takes the old one's GPU instead of waiting for one"
    )
    prometheus_scrape: bool = Field(default=True, description="KServe's scrape annotations for the runtime's /metrics")

    @model_validator(mode="after")
    def _consistent(self) -> Serving:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if (self.scale_metric is None) != (self.scale_target is None):
            raise ValueError("scaleMetric and scaleTarget go together")
        return self


class PlatformConfig(CamelStrict):
    """What pipeline components read from the platform ConfigMap the Helm chart installs."""

    images: Images
    pools: dict[PoolName, NodePool]
    store_endpoint: str
    store_secure: bool = False
    store_secret: str = Field(description="name of the Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    data_bucket: str = "simplear-data"
    checkpoint_bucket: str = "simplear-checkpoints"
    inference_service: str = Field(default="", description="InferenceService the pipelines deploy to; empty: none")
    serving: Serving | None = Field(default=None, description="KServe serving; None: kserve disabled in the chart")
    scheduling: Scheduling = Scheduling()
    rollout_placement: Literal["sidecar", "pool"] = Field(
        default="sidecar", description="GRPO's rollout server: in the trainer's master pod, or a Deployment on its pool"
    )
    presets: tuple[str, ...] = tuple(PRESETS)

    @model_validator(mode="after")
    def _known(self) -> PlatformConfig:
        missing = {"tokenize", "train", "rollout", "serve", "cpu"} - set(self.pools)
        if missing:
            raise ValueError(f"node pools missing: {', '.join(sorted(missing))}")
        unknown = set(self.presets) - set(PRESETS)
        if unknown:
            raise ValueError(f"unknown presets {sorted(unknown)}; known: {', '.join(PRESETS)}")
        if self.inference_service and self.serving is None:
            raise ValueError(f"inferenceService {self.inference_service} set but no serving runtime")
        return self


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
    init: Literal["random", "text_lm", "checkpoint"] = "random"
    init_from: str | None = Field(default=None, description="text LM directory or previous stage's model URI")
    preset: str = "tiny"
    shape: ModelShape | None = Field(default=None, description="transformer shape of a random init; None = preset's")
    zero_stage: Literal[2, 3] = 2
    precision: Literal["auto", "bf16", "fp32"] = Field(default="auto", description="auto: bf16 on GPU, fp32 on CPU")
    max_steps: int = Field(gt=0)
    batch_size: int = Field(default=8, gt=0, description="sequences per device per micro-step")
    grad_accum: int = Field(default=1, gt=0)
    learning_rate: float = Field(default=1e-4, gt=0)
    lr_schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    loss_on: Literal["all", "codes"] = Field(
        default="all", description="all: every token after the first, prompt text included (upstream's); codes: codes"
    )
    max_grad_norm: float = Field(default=1.0, gt=0)
    p_drop_cond: float = Field(default=0.1, ge=0, le=1, description="share of prompts dropped to <|t2i|><|soi|>")
    sample_short: bool = Field(default=True, description="pick the short or long caption at random; False = long")
    max_prompt_tokens: int = Field(default=128, ge=2, description="longer prompts keep their head and <|soi|>")
    gradient_checkpointing: bool = False
    dataloader_workers: int = Field(default=0, ge=0)
    save_steps: int = Field(default=500, gt=0)
    logging_steps: int = Field(default=10, gt=0)
    tensorboard: bool = True
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


class ServeBatching(Strict):
    """Dynamic batching of the model server: how images are grouped into sampler calls and how long they may wait."""

    max_batch: int = Field(default=16, gt=0, description="images decoded in one sampler call; 1 turns batching off")
    window_ms: float = Field(
        default=10.0, ge=0.0, le=10_000.0, description="how long the oldest waiting image waits for others to join"
    )
    queue_limit: int = Field(default=256, gt=0, description="images waiting to be decoded; beyond it requests get 503")
    deadline_s: float = Field(default=300.0, gt=0.0, description="a request not answered by then is cancelled: 504")

    @model_validator(mode="after")
    def _window_within_deadline(self) -> ServeBatching:
        if self.window_ms / 1000.0 >= self.deadline_s:
            raise ValueError(f"batch window {self.window_ms:g} ms must be shorter than deadline {self.deadline_s:g} s")
        return self


class ServeLimits(Strict):
    """What one request may ask of the model server; anything beyond is answered 400."""

    max_images_per_request: int = Field(default=8, gt=0)
    max_body_bytes: int = Field(default=1 << 20, gt=0, description="request body size beyond which the answer is 413")
    max_prompt_chars: int = Field(default=4000, gt=0)
    max_prompt_tokens: int = Field(default=512, gt=0, description="tokens of the formatted prompt the model reads")
    resolutions: tuple[int, ...] = Field(default=(), description="pixels per side served; empty = the checkpoint's")


class ServeConfig(Strict):
    """`simplear serve`: where the model comes from, where the server listens, batching and request limits."""

    model_name: str = Field(default="simplear", pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
    model_dir: str = Field(default="/mnt/models", description="checkpoint directory or store URI")
    random_init: bool = Field(default=False, description="random weights of `preset` instead of model_dir")
    preset: str = Field(default="tiny", description="random init's shape; vision of a checkpoint without vision.json")
    vision_checkpoint: str | None = Field(default=None, description="Cosmos tokenizer directory or URI")
    codes_only: bool = Field(default=False, description="answer visual codes, load no visual tokenizer")
    engine: Literal["torch", "vllm"] = "torch"
    device: str | None = Field(default=None, description="None = cuda when available, else cpu")
    hosts: tuple[str, ...] = Field(default=("127.0.0.1",), min_length=1, description="addresses the server binds")
    http_port: int = Field(default=8080, gt=0, lt=65536)
    batching: ServeBatching = ServeBatching()
    limits: ServeLimits = ServeLimits()

    @model_validator(mode="after")
    def _known_preset(self) -> ServeConfig:
        get_preset(self.preset)
        return self


class RewardSpec(Strict):
    """One reward of a GRPO run: its registered name, its weight in the sum, and the checkpoints it reads."""

    name: str = Field(description="a registered reward: geneval_shapes, clip or aesthetic")
    weight: float = 1.0
    clip_model: str | None = Field(default=None, description="CLIP directory or store URI (clip, aesthetic)")
    aesthetic_head: str | None = Field(
        default=None, description="LAION aesthetic MLP as safetensors, path or store URI (aesthetic)"
    )
    batch_size: int = Field(default=32, gt=0, description="images scored together on the device")


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
    grad_accum: int = Field(default=1, gt=0)
    num_iterations: int = Field(default=1, gt=0, description="optimizer passes over each batch of rollouts")
    max_steps: int = Field(gt=0)
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
    gradient_checkpointing: bool = False
    save_steps: int = Field(default=50, gt=0)
    logging_steps: int = Field(default=1, gt=0)
    tensorboard: bool = True
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


class VllmEngineConfig(Strict):
    """The vLLM rollout engine: memory, rows in flight, CFG pair admission and how new weights arrive."""

    kv_cache_gib: int = Field(default=1, gt=0, description="KV cache on CPU (VLLM_CPU_KVCACHE_SPACE)")
    gpu_memory_utilization: float = Field(default=0.5, gt=0.0, le=1.0, description="share of the GPU vLLM takes")
    max_num_seqs: int = Field(default=256, ge=2, description="rows in flight; an image with CFG takes two")
    max_model_len: int | None = Field(default=None, gt=0, description="prompt + codes; None = the model's positions")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(default="auto", description="auto: bf16 on GPU, fp32 on CPU")
    enforce_eager: bool | None = Field(default=None, description="no CUDA graphs / compile; None = eager on CPU only")
    scheduler: Literal["pair", "vllm"] = Field(
        default="pair", description="pair: CFG pairs admitted together; vllm: vLLM's own (splits pairs, for comparison)"
    )
    weight_transfer: Literal["store", "nccl"] = Field(
        default="store", description="store: reload from a saved checkpoint; nccl: broadcast from trainer rank 0 (GPU)"
    )


class RolloutServerConfig(Strict):
    """`simplear rollout-server`: the policy it starts from, its engine, where it listens, what a request may ask."""

    model: str = Field(description="checkpoint directory or store URI of the initial policy")
    engine: Literal["torch", "vllm"] = "torch"
    device: str | None = Field(default=None, description="None = cuda when available, else cpu")
    hosts: tuple[str, ...] = Field(default=("127.0.0.1",), min_length=1, description="addresses the server binds")
    port: int = Field(default=8000, gt=0, lt=65536)
    max_images_per_request: int = Field(default=1024, gt=0)
    max_prompt_chars: int = Field(default=2000, gt=0)
    torch_batch_size: int = Field(default=64, gt=0, description="images per sampler call of the torch engine")
    scratch: str | None = Field(default=None, description="where pushed weights are downloaded; None = a temp dir")
    vllm: VllmEngineConfig = VllmEngineConfig()


class ShapesRecipe(Strict):
    """Sizes of the shapes lifecycle (data, steps, evaluation sampling); fields are lifecycle pipeline parameters."""

    preset: str = "tiny"
    pretrain_images: int = Field(default=20_000, gt=0)
    pretrain_data_seed: int = 0
    sft_images: int = Field(default=6_000, gt=0)
    sft_data_seed: int = 11
    eval_per_tag: int = Field(default=12, gt=0, description="held-out prompts per GenEval tag")
    procs_per_node: int = Field(default=2, ge=0, description="ranks per stage run; 0 = the pool's GPUs (1 locally)")
    batch_size: int = Field(default=16, gt=0, description="pretrain / SFT sequences per rank per step")
    pretrain_steps: int = Field(default=600, gt=0)
    pretrain_learning_rate: float = Field(default=1e-3, gt=0)
    sft_steps: int = Field(default=250, gt=0)
    sft_learning_rate: float = Field(default=3e-4, gt=0)
    train_lr_schedule: str = Field(
        default="cosine", pattern="^(constant|constant_with_warmup|linear|cosine)$",
        description="pretrain / SFT schedule after a warmup of 5% of the steps (upstream: constant, no warmup)",
    )
    train_weight_decay: float = Field(default=0.0, ge=0, description="pretrain / SFT weight decay (upstream: 0.01)")
    train_loss_on: str = Field(
        default="codes", pattern="^(all|codes)$", description="pretrain / SFT loss on codes only (upstream: all)"
    )
    grpo_steps: int = Field(default=64, gt=0)
    grpo_batch_size: int = Field(default=32, gt=0, description="rollout images per rank per step")
    grpo_num_generations: int = Field(default=8, ge=2)
    grpo_num_iterations: int = Field(default=2, gt=0)
    grpo_learning_rate: float = Field(default=2e-4, gt=0)
    grpo_max_minutes: float = Field(default=4.0, ge=0, description="GRPO time limit; 0 = none")
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
    cfg_scale: float = Field(default=5.0, ge=0)
    negative_prompt: str = Field(default="", description="'' = the CFG-dropped prompt as the unconditional row")
    seed: int = Field(default=1000, ge=0, description="evaluation, serving check and GRPO seed")


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
    train_loss_on: str = Field(default="all", pattern="^(all|codes)$")
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

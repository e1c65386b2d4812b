"""Sampling and serving config: per-request sampling, the KServe model server, the rollout server, its vLLM engine."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from simplear.config.presets import Strict, get_preset


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


class ServeBatching(Strict):
    """Dynamic batching of the model server: how images are grouped into sampler calls and how long they may wait."""

    max_batch: int = Field(default=16, gt=0, description="images decoded in one sampler call; 1 turns batching off")
    batch_window_ms: float = Field(
        default=10.0, ge=0.0, le=10_000.0, description="how long the oldest waiting image waits for others to join"
    )
    queue_limit: int = Field(default=256, gt=0, description="images waiting to be decoded; beyond it requests get 503")
    deadline_s: float = Field(default=300.0, gt=0.0, description="a request not answered by then is cancelled: 504")

    @model_validator(mode="after")
    def _window_within_deadline(self) -> ServeBatching:
        if self.batch_window_ms / 1000.0 >= self.deadline_s:
            raise ValueError(f"batch window {self.batch_window_ms:g} ms must be shorter than deadline "
                             f"{self.deadline_s:g} s")
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

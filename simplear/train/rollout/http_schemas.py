"""Request and response bodies of the rollout server's HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simplear.config import SamplingConfig
from simplear.model.prompt import GENERATION_PREFIX

_DEFAULTS = SamplingConfig()


class Body(BaseModel):
    """Base of every body: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class GenerateRequest(Body):
    """Prompts, images per prompt, codes per image and sampling parameters shared by every image.

    Image k (prompt k // n, sample k % n) uses seeds[k], or seed + k when seeds is absent. The sampling
    fields are checked against SamplingConfig's bounds.
    """

    prompts: list[str] = Field(min_length=1, description="captions; the server adds the t2i template")
    prefix: str = Field(default=GENERATION_PREFIX, description="put before every caption")
    n: int = Field(default=1, ge=1, description="images per prompt (a GRPO group)")
    num_codes: int = Field(gt=0, description="visual codes per image")
    cfg_scale: float = _DEFAULTS.cfg_scale
    temperature: float = _DEFAULTS.temperature
    top_k: int = _DEFAULTS.top_k
    top_p: float = _DEFAULTS.top_p
    negative_prompt: str | None = None
    repetition_penalty: float | None = Field(default=1.0, description="None: the checkpoint's generation_config.json")
    seed: int = _DEFAULTS.seed
    seeds: list[int] | None = Field(default=None, description="one per image, prompt-major")
    return_uncond: bool = Field(default=False, description="vllm only: also return the unconditional rows' codes")
    force_split_s: float = Field(
        default=0.0, ge=0.0, le=10.0,
        description="vllm only, fault injection for tests: add unconditional rows this much later, unpaired",
    )


class GenerateResponse(Body):
    """Codes and their sampling log-probabilities, one row per image, and the policy version that drew them."""

    codes: list[list[int]]
    logprobs: list[list[float]]
    policy_version: int
    engine: str
    uncond_codes: list[list[int]] | None = None


class WeightsRequest(Body):
    """Where the trainer saved the new policy (a complete checkpoint artifact: manifest last)."""

    uri: str = Field(min_length=1)


class NcclInitRequest(Body):
    """vLLM weight-transfer init info (master address and port, rank offset, world size) for the NCCL group."""

    init_info: dict[str, Any]


class NcclUpdateRequest(Body):
    """vLLM weight-transfer update info: names, dtype_names and shapes of the parameters about to be broadcast."""

    update_info: dict[str, Any]


class WeightsResponse(Body):
    """The policy version now served and how long loading took."""

    policy_version: int
    seconds: float


class HealthResponse(Body):
    """Liveness, engine, policy version, CFG pairs failed for decoding apart, and how weights may be pushed."""

    status: str
    engine: str
    policy_version: int
    max_positions: int
    codebook_size: int
    cfg_pairs_failed: int
    weight_sync: list[str] = Field(description="how pushes may arrive: store, and nccl where the server takes it")
    nccl_world_size: int = Field(description="the server's ranks in an NCCL weight-push group")

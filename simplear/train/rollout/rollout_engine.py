"""What the rollout server needs from an engine, and building the one the config names."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from simplear.config import RolloutServerConfig
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Samples


class RolloutEngine(Protocol):
    """Samples codes with log-probabilities and takes new weights from a checkpoint directory."""

    name: str
    max_positions: int

    @property
    def vocab_size(self) -> int:
        """Visual codes the model writes."""
        ...

    def sample(self, requests: list[Request], num_codes: int) -> Samples:
        """Codes [B, N] and the log-probability [B, N] of each under the distribution it was drawn from."""
        ...

    def prompt_tokens(self, caption: str) -> int:
        """Positions the formatted prompt of `caption` takes."""
        ...

    def reload_weights(self, model_dir: Path) -> None:
        """Sample from the checkpoint in `model_dir` from now on; called with no sampling in flight."""
        ...

    def shutdown(self) -> None:
        """Release the engine."""
        ...


def resolved_device() -> str:
    """cuda when available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def engine_dtype(config: RolloutServerConfig) -> str:
    """The dtype the engine holds the weights in: vLLM's configured one, else bf16 on GPU and fp32 on CPU."""
    if config.engine == "vllm" and config.vllm.dtype != "auto":
        return config.vllm.dtype
    return "bfloat16" if (config.device or resolved_device()).startswith("cuda") else "float32"


def build_rollout_engine(config: RolloutServerConfig, model_dir: Path) -> RolloutEngine:
    """The torch sampler or vLLM engine over a local checkpoint directory, on the configured device."""
    device = config.device or resolved_device()
    if config.engine == "vllm":
        from simplear.sampling.vllm_engine import VllmEngine

        return VllmEngine(model_dir, config.vllm, device=device)
    from simplear.train.rollout.torch_engine import TorchRolloutEngine

    model = SimpleARModel.load(model_dir, dtype=getattr(torch, engine_dtype(config)), device=device)
    return TorchRolloutEngine(model, config.torch_batch_size)

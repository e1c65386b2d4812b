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


def build_rollout_engine(config: RolloutServerConfig, model_dir: Path) -> RolloutEngine:
    """The torch sampler or vLLM engine over a local checkpoint directory, on the configured device."""
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if config.engine == "vllm":
        from simplear.sampling.vllm_engine import VllmEngine

        return VllmEngine(model_dir, config.vllm, device=device)
    from simplear.train.rollout.torch_engine import TorchRolloutEngine

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return TorchRolloutEngine(SimpleARModel.load(model_dir, dtype=dtype, device=device), config.torch_batch_size)

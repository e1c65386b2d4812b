"""The engine seam of the server: requests to visual codes; the project's torch sampler here, vLLM behind it later."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from tokenizers import Tokenizer

from simplear.model.prompt import t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler
from simplear.store import is_s3


class Engine(Protocol):
    """Decodes visual codes for a batch of requests, each with its own parameters and seed."""

    max_positions: int

    def generate(self, requests: list[Request], num_codes: int) -> torch.Tensor:
        """Codes [len(requests), num_codes] on the CPU; a request's codes depend only on itself, not its batch."""
        ...

    def prompt_tokens(self, caption: str) -> int:
        """Positions the formatted prompt of `caption` takes; safe to call while `generate` runs in another thread."""
        ...


class TorchEngine:
    """The project's KV-cache sampler with batched CFG (CUDA graphs on a GPU)."""

    def __init__(self, model: SimpleARModel) -> None:
        self.sampler = Sampler(model)
        self.max_positions = int(model.lm.config.max_position_embeddings)
        self._counter = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())

    def generate(self, requests: list[Request], num_codes: int) -> torch.Tensor:
        """Codes [len(requests), num_codes] from one sampler call."""
        return self.sampler.generate(requests, num_codes)

    def prompt_tokens(self, caption: str) -> int:
        """Token count of `<|t2i|>` + prefix + caption + `<|soi|>`, from a private copy of the tokenizer."""
        return len(self._counter.encode(t2i_prompt(caption), add_special_tokens=False).ids)


def vllm_engine(model: SimpleARModel, model_dir: str | None) -> Engine:
    """vLLM with CFG pairs inside the engine; it reads a local checkpoint directory, written here if there is none."""
    from simplear.config import VllmEngineConfig
    from simplear.sampling.vllm_engine import VllmEngine

    if model_dir is None or is_s3(model_dir) or not Path(model_dir).is_dir():
        model_dir = tempfile.mkdtemp(prefix="simplear-vllm-model-")
        model.save(model_dir)
    return VllmEngine(model_dir, VllmEngineConfig(), device=model.lm.device.type)


ENGINES: dict[str, Callable[[SimpleARModel, str | None], Engine]] = {
    "torch": lambda model, _model_dir: TorchEngine(model),
    "vllm": vllm_engine,
}


def build_engine(name: str, model: SimpleARModel, model_dir: str | None = None) -> Engine:
    """The engine called `name` over a loaded model (vLLM also reads `model_dir`, a local checkpoint)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
    return ENGINES[name](model, model_dir)

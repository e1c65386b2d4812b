"""The engine seam of the server: requests to visual codes; the project's torch sampler here, vLLM behind it later."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from tokenizers import Tokenizer

from simplear.model.prompt import t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler


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


ENGINES: dict[str, Callable[[SimpleARModel], Engine]] = {"torch": TorchEngine}


def build_engine(name: str, model: SimpleARModel) -> Engine:
    """The engine called `name` over a loaded model."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
    return ENGINES[name](model)

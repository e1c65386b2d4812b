"""The SamplingEngine seam: requests to visual codes with log-probabilities, from the torch sampler or vLLM.

Serve, the rollout server and in-process rollouts all sample through one; `build_engine` makes the one a config
names. The vLLM engine lives in simplear.sampling.vllm.engine.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Protocol

import torch
from tokenizers import Tokenizer

from simplear.config import VllmEngineConfig
from simplear.model.prompt import t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler, Samples

ENGINE_NAMES = ("torch", "vllm")


class SamplingEngine(Protocol):
    """Samples codes for requests that each carry their own parameters and seed; takes new weights in place."""

    name: str
    max_positions: int

    @property
    def vocab_size(self) -> int:
        """Visual codes the model writes."""
        ...

    def sample(self, requests: list[Request], num_codes: int) -> Samples:
        """Codes [B, N] on the CPU and the log-probability of each under the distribution it was drawn from.

        A request's codes depend only on itself, not on the batch it shares.
        """
        ...

    def generate(self, requests: list[Request], num_codes: int) -> torch.Tensor:
        """Codes [len(requests), num_codes] on the CPU."""
        ...

    def prompt_tokens(self, caption: str) -> int:
        """Positions the formatted prompt of `caption` takes; safe to call while sampling runs in another thread."""
        ...

    def reload_weights(self, model_dir: Path) -> None:
        """Sample from the checkpoint in `model_dir` from now on; called with no sampling in flight."""
        ...

    def shutdown(self) -> None:
        """Release the engine."""
        ...


class TorchEngine:
    """The project's KV-cache sampler (batched CFG, CUDA graphs on a GPU) in this process, one call at a time."""

    name = "torch"

    def __init__(self, model: SimpleARModel, batch_size: int | None = None) -> None:
        self.sampler = Sampler(model)
        self.batch_size = batch_size
        self.max_positions = int(model.lm.config.max_position_embeddings)
        self._counter = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
        self._lock = threading.Lock()

    @property
    def vocab_size(self) -> int:
        """Visual codes the model writes."""
        return self.sampler.model.vocab.codebook_size

    def sample(self, requests: list[Request], num_codes: int) -> Samples:
        """Sampler.sample over chunks of `batch_size` requests (all in one call when it is None)."""
        if not requests:
            raise ValueError("no requests to sample")
        size = self.batch_size or len(requests)
        with self._lock:
            parts = [self.sampler.sample(requests[i : i + size], num_codes) for i in range(0, len(requests), size)]
        if len(parts) == 1:
            return parts[0]
        return Samples(torch.cat([p.codes for p in parts]), torch.cat([p.logprobs for p in parts]))

    def generate(self, requests: list[Request], num_codes: int) -> torch.Tensor:
        """Codes [len(requests), num_codes], exactly as `sample` draws them."""
        return self.sample(requests, num_codes).codes

    def prompt_tokens(self, caption: str) -> int:
        """Token count of `<|t2i|>` + prefix + caption + `<|soi|>`, from a private copy of the tokenizer."""
        return len(self._counter.encode(t2i_prompt(caption), add_special_tokens=False).ids)

    def reload_weights(self, model_dir: Path) -> None:
        """Load a checkpoint directory on the current device and dtype and sample from it from now on."""
        current = self.sampler.model
        new = SimpleARModel.load(model_dir, dtype=current.lm.dtype, device=current.lm.device)
        if new.vocab != current.vocab:
            raise ValueError(f"{model_dir} has visual vocabulary {new.vocab}, the served policy has {current.vocab}")
        self.use_model(new)

    def use_model(self, model: SimpleARModel) -> None:
        """Sample from `model`'s current weights from now on (the trainer's own model, for in-process rollouts)."""
        with self._lock:
            self.sampler.model = model
            self.sampler.reload_weights()

    def shutdown(self) -> None:
        """Nothing to stop: the sampler lives in this process."""


def resolved_device() -> str:
    """cuda when available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def engine_dtype(name: str, device: str, vllm: VllmEngineConfig) -> str:
    """The dtype the engine holds the weights in: vLLM's configured one, else bf16 on GPU and fp32 on CPU."""
    if name == "vllm" and vllm.dtype != "auto":
        return vllm.dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


def build_engine(
    name: str, device: str, model_dir: str | Path | None = None, model: SimpleARModel | None = None,
    batch_size: int | None = None, vllm: VllmEngineConfig | None = None,
) -> SamplingEngine:
    """The engine called `name` on `device`, over a local checkpoint directory, a loaded model, or both.

    torch samples from `model` (else loads `model_dir` in engine_dtype) in chunks of `batch_size`; vllm reads
    `model_dir`, or a copy of `model` saved to a temporary directory that the engine's shutdown removes.
    """
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {name!r}; known engines: {', '.join(ENGINE_NAMES)}")
    if model is None and model_dir is None:
        raise ValueError("an engine needs a loaded model or a checkpoint directory")
    vllm = vllm or VllmEngineConfig()
    if name == "vllm":
        from simplear.sampling.vllm.engine import VllmEngine

        if model_dir is not None:
            return VllmEngine(model_dir, vllm, device=device)
        copy = tempfile.TemporaryDirectory(prefix="simplear-vllm-model-")
        model.save(copy.name)
        return VllmEngine(copy.name, vllm, device=device, owned_dir=copy)
    if model is None:
        model = SimpleARModel.load(model_dir, dtype=getattr(torch, engine_dtype(name, device, vllm)), device=device)
    return TorchEngine(model, batch_size)

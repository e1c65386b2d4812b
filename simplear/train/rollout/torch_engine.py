"""The rollout server's torch engine: the project's own sampler, for machines without vLLM."""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from tokenizers import Tokenizer

from simplear.model.prompt import t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler, Samples


class TorchRolloutEngine:
    """Sampler.sample in chunks of `batch_size`, one call at a time; new weights are loaded whole and swapped in."""

    name = "torch"

    def __init__(self, model: SimpleARModel, batch_size: int = 64) -> None:
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
        """Codes and log-probabilities for every request, exactly as Sampler.sample draws them."""
        with self._lock:
            parts = [self.sampler.sample(requests[i : i + self.batch_size], num_codes)
                     for i in range(0, len(requests), self.batch_size)]
        return Samples(torch.cat([p.codes for p in parts]), torch.cat([p.logprobs for p in parts]))

    def prompt_tokens(self, caption: str) -> int:
        """Token count of the formatted prompt of `caption`."""
        return len(self._counter.encode(t2i_prompt(caption), add_special_tokens=False).ids)

    def reload_weights(self, model_dir: Path) -> None:
        """Load a checkpoint directory on the current device and dtype and sample from it from now on."""
        current = self.sampler.model
        new = SimpleARModel.load(model_dir, dtype=current.lm.dtype, device=current.lm.device)
        if new.vocab != current.vocab:
            raise ValueError(f"{model_dir} has visual vocabulary {new.vocab}, the served policy has {current.vocab}")
        with self._lock:
            self.sampler.model = new
            self.sampler.reload_weights()

    def shutdown(self) -> None:
        """Nothing to stop: the sampler lives in this process."""

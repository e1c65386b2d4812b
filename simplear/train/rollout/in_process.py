"""Rollouts from the project's sampler in the trainer's own process."""

from __future__ import annotations

import torch

from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler
from simplear.train.rollout.client import Rollout


class InProcessRolloutClient:
    """A RolloutClient over a Sampler on the trainer's model; a weight push rebuilds the sampler's fused copies."""

    def __init__(self, model: SimpleARModel, batch_size: int = 64) -> None:
        self.sampler = Sampler(model)
        self.batch_size = batch_size
        self.version = 0

    def generate(self, requests: list[Request], num_codes: int) -> Rollout:
        """Codes and log-probabilities for every request, in chunks of `batch_size`."""
        parts = [self.sampler.sample(requests[i : i + self.batch_size], num_codes)
                 for i in range(0, len(requests), self.batch_size)]
        return Rollout(torch.cat([p.codes for p in parts]), torch.cat([p.logprobs for p in parts]), self.version)

    def push_weights(self, model: SimpleARModel) -> int:
        """Sample from `model` from now on."""
        self.sampler.model = model
        self.sampler.reload_weights()
        self.version += 1
        return self.version

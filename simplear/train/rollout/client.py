"""The RolloutClient seam: requests in, codes with log-probabilities and the policy version out; weights pushed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request


@dataclass(frozen=True)
class Rollout:
    """Codes [B, N], their sampling log-probabilities [B, N], and the policy version that produced them."""

    codes: torch.Tensor
    logprobs: torch.Tensor
    policy_version: int


class RolloutClient(Protocol):
    """Where a trainer gets rollouts from: in-process, or a rollout server over HTTP."""

    def generate(self, requests: list[Request], num_codes: int) -> Rollout:
        """Sample one image's codes per request (a group is n requests with the same prompt and distinct seeds)."""
        ...

    def push_weights(self, model: SimpleARModel) -> int:
        """Make the engine sample from `model`'s current weights; returns the new policy version."""
        ...

"""trl's `rollout_func` over a RolloutClient: one image per (repeated) prompt, sampled and decoded.

Rollouts are drawn with the run's sampling settings: without CFG for policy `plain`, with it for `guided`. The
trainer scores them with the same distribution (sampled_policy.py), so the ratio pi_theta / pi_old of trl's loss
is between two values of the policy that sampled, and it starts at 1 for the sampler's own weights. The sampling
log-probabilities returned here go to trl as the `logprobs` it requires (it reads them only for vLLM importance
sampling, off here) and into the logs. Freshness is checked with the policy version: a rollout must come from the
weights pushed for the current optimizer step, or the step fails rather than train on stale samples.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from trl import GRPOTrainer

from simplear.config import SamplingConfig
from simplear.model.prompt import GENERATION_PREFIX, t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.train import distributed
from simplear.train.grpo.step_times import StepTimes
from simplear.train.rollout.client import RolloutClient
from simplear.vision.base import VisualTokenizer, tensor_to_pil

IMAGES_FIELD = "rollout_images"
"""Extra rollout field trl hands to the reward functions: the decoded PIL image of each completion."""


class StaleRolloutError(RuntimeError):
    """A rollout engine answered with another policy version than the one pushed for this step."""


def rollout_seed(base: int, step: int, rank: int, index: int) -> int:
    """Sampling seed of completion `index` on `rank` at optimizer step `step`: distinct within a group, reproducible."""
    digest = hashlib.sha256(f"simplear-grpo/{base}/{step}/{rank}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class RolloutFunction:
    """Pushes the policy's weights once per optimizer step, samples every prompt, decodes the codes to images.

    Ranks sample their own share of the prompts. With an engine per rank (in-process) every rank pushes to its own;
    with one engine for all (a rollout server) rank 0 pushes and every rank expects the version it got back.
    """

    def __init__(
        self, client: RolloutClient, model: SimpleARModel, decoder: VisualTokenizer, grid: int,
        sampling: SamplingConfig, times: StepTimes, prefix: str = GENERATION_PREFIX, shared_engine: bool = False,
    ) -> None:
        self.client = client
        self.shared_engine = shared_engine
        self.model = model
        self.decoder = decoder
        self.grid = grid
        self.sampling = sampling
        self.prefix = prefix
        self.times = times
        self.pushed_step: int | None = None
        self.version: int | None = None
        self.last_logprob_mean: float | None = None

    def __call__(self, prompts: list[str], trainer: GRPOTrainer) -> dict[str, Any]:
        """trl's rollout contract: prompt ids, completion ids and their sampling log-probs, plus the decoded images."""
        started = time.perf_counter()
        step, rank = trainer.state.global_step, trainer.accelerator.process_index
        if self.pushed_step != step:
            self.version = self._push_weights()
            self.pushed_step = step
        requests = [
            Request(prompt, self.sampling.model_copy(update={"seed": rollout_seed(self.sampling.seed, step, rank, i)}),
                    self.prefix)
            for i, prompt in enumerate(prompts)
        ]
        rollout = self.client.generate(requests, self.grid * self.grid)
        if rollout.policy_version != self.version:
            raise StaleRolloutError(
                f"step {step}: rollouts come from policy version {rollout.policy_version}, "
                f"but version {self.version} was pushed for this step"
            )
        images = tensor_to_pil(self.decoder.decode(rollout.codes.view(-1, self.grid, self.grid)))
        self.last_logprob_mean = float(rollout.logprobs.mean())
        self.times.add("rollout", time.perf_counter() - started)
        return {
            "prompt_ids": self.model.encode_prompts([t2i_prompt(prompt, self.prefix) for prompt in prompts]),
            "completion_ids": self.model.vocab.to_ids(rollout.codes).tolist(),
            "logprobs": rollout.logprobs.tolist(),
            IMAGES_FIELD: images,
        }

    def _push_weights(self) -> int:
        """Push the policy: each rank to its own engine, or rank 0 alone to an engine all ranks share."""
        if not self.shared_engine:
            return self.client.push_weights(self.model)
        version = self.client.push_weights(self.model) if distributed.rank() == 0 else None
        return distributed.broadcast_from_rank0(version)

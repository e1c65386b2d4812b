"""GRPO's rollouts: prompts from meta files, the RolloutClient the run names, and trl's `rollout_func` over it.

trl's `rollout_func` samples one image per (repeated) prompt through a RolloutClient and decodes it.

Rollouts are drawn with the run's sampling settings: without CFG for policy `plain`, with it for `guided`. The
trainer scores them with the same distribution (sampled_policy.py), so the ratio pi_theta / pi_old of trl's loss
is between two values of the policy that sampled, and it starts at 1 for the sampler's own weights. The sampling
log-probabilities returned here go to trl as the `logprobs` it requires (it reads them only for vLLM importance
sampling, off here) and into the logs. Freshness is checked with the policy version: a rollout must come from the
weights pushed for the current optimizer step, or the step fails rather than train on stale samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

from datasets import Dataset
from trl import GRPOTrainer

from simplear.config import GRPOTrainConfig, SamplingConfig
from simplear.data.meta import CaptionPair, load_meta
from simplear.model.prompt import GENERATION_PREFIX, t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.store import Store, join
from simplear.train import job
from simplear.train.metrics import StepTimes
from simplear.train.rollout.client import HttpRolloutClient, InProcessRolloutClient, RolloutClient
from simplear.train.rollout.weight_sync import NcclWeightPush, nccl_unavailable
from simplear.vision.base import VisualTokenizer, tensor_to_pil

log = logging.getLogger(__name__)

CaptionChoice = Literal["short", "long", "mixed"]
METADATA_COLUMN = "metadata"
"""Dataset column holding each prompt's GenEval metadata as JSON text ("null" when its record has none)."""
PUSHED_WEIGHTS_DIR = "rollout-weights"
"""Where, under the run's output, an HTTP rollout client leaves the policy it pushes for the server to load."""
IMAGES_FIELD = "rollout_images"
"""Extra rollout field trl hands to the reward functions: the decoded PIL image of each completion."""


@dataclass(frozen=True)
class PromptRecord:
    """A caption to generate from and the GenEval metadata that judges it (None when the record has none)."""

    caption: str
    metadata: dict[str, Any] | None


def choose_caption(caption: str | CaptionPair, choice: CaptionChoice, rng: random.Random) -> str:
    """The caption a record contributes: a plain caption as is; of a pair the short, the long, or one at random."""
    if isinstance(caption, str):
        return caption
    if choice == "mixed":
        choice = "short" if rng.random() < 0.5 else "long"
    return caption.short if choice == "short" else caption.long


def load_prompts(uri: str, choice: CaptionChoice, seed: int, store: Store) -> list[PromptRecord]:
    """Every record of a meta file or mixing YAML as a prompt; `mixed` picks per record from (seed, index)."""
    records = load_meta(uri, seed=seed, read_bytes=store.read)
    if not records:
        raise ValueError(f"{uri} holds no prompt records")
    return [
        PromptRecord(
            choose_caption(record.caption, choice, random.Random(f"simplear-grpo/{seed}/{index}")),
            record.extra.get("metadata"),
        )
        for index, record in enumerate(records)
    ]


def prompt_dataset(prompts: list[PromptRecord]) -> Dataset:
    """The trainer's dataset: a `prompt` column (the caption) and the metadata as JSON text, which Arrow keeps exact."""
    return Dataset.from_dict({
        "prompt": [p.caption for p in prompts],
        METADATA_COLUMN: [json.dumps(p.metadata) for p in prompts],
    })


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
        version = self.client.push_weights(self.model) if job.rank() == 0 else None
        return job.broadcast_from_rank0(version)


def rollout_client(config: GRPOTrainConfig, model: SimpleARModel, store: Store) -> RolloutClient:
    """`in_process`: the torch engine over the trainer's own model; `http`: the rollout server at `rollout_url`.

    Over HTTP rank 0 pushes the weights: over NCCL when the config allows it and both ends run on CUDA (auto), else
    through the store (`<output>/rollout-weights`), which works on any device and is the fallback.
    """
    if config.rollout == "in_process":
        return InProcessRolloutClient(model, batch_size=config.rollout_batch_size)
    client = HttpRolloutClient(str(config.rollout_url), store, join(config.output, PUSHED_WEIGHTS_DIR))
    if config.rollout_weight_sync != "store" and job.rank() == 0:
        client.nccl = nccl_push_for(config, client)
    return client


def nccl_push_for(config: GRPOTrainConfig, client: HttpRolloutClient) -> NcclWeightPush | None:
    """The NCCL push to the client's server, or None (store) when auto finds it unusable; RuntimeError when the
    config demands NCCL and it cannot be had."""
    why = nccl_unavailable(client.health())
    if why is None:
        return NcclWeightPush(str(config.rollout_url), config.rollout_sync_host, config.rollout_sync_port)
    if config.rollout_weight_sync == "nccl":
        raise RuntimeError(f"--rollout-weight-sync nccl, but {why}")
    log.info("weights go to the rollout server through the store: %s", why)
    return None

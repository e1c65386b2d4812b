"""The RolloutClient a run's config names: the sampler in this process, or a rollout server over HTTP."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from simplear.config import GRPOTrainConfig
from simplear.model.simplear_lm import SimpleARModel
from simplear.store import Store, join
from simplear.train import distributed
from simplear.train.rollout.client import RolloutClient
from simplear.train.rollout.in_process import InProcessRolloutClient

if TYPE_CHECKING:
    from simplear.train.rollout.http_client import HttpRolloutClient
    from simplear.train.rollout.nccl_push import NcclWeightPush

log = logging.getLogger(__name__)

PUSHED_WEIGHTS_DIR = "rollout-weights"
"""Where, under the run's output, an HTTP rollout client leaves the policy it pushes for the server to load."""


def rollout_client(config: GRPOTrainConfig, model: SimpleARModel, store: Store) -> RolloutClient:
    """`in_process`: a Sampler over the trainer's own model; `http`: the rollout server at `rollout_url`.

    Over HTTP rank 0 pushes the weights: over NCCL when the config allows it and both ends run on CUDA (auto), else
    through the store (`<output>/rollout-weights`), which works on any device and is the fallback.
    """
    if config.rollout == "in_process":
        return InProcessRolloutClient(model, batch_size=config.rollout_batch_size)
    from simplear.train.rollout.http_client import HttpRolloutClient

    client = HttpRolloutClient(str(config.rollout_url), store, join(config.output, PUSHED_WEIGHTS_DIR))
    if config.rollout_weight_sync != "store" and distributed.rank() == 0:
        client.nccl = nccl_push_for(config, client)
    return client


def nccl_push_for(config: GRPOTrainConfig, client: HttpRolloutClient) -> NcclWeightPush | None:
    """The NCCL push to the client's server, or None (store) when auto finds it unusable; RuntimeError when the
    config demands NCCL and it cannot be had."""
    from simplear.train.rollout.nccl_push import NcclWeightPush, nccl_unavailable

    why = nccl_unavailable(client.health())
    if why is None:
        return NcclWeightPush(str(config.rollout_url), config.rollout_sync_host, config.rollout_sync_port)
    if config.rollout_weight_sync == "nccl":
        raise RuntimeError(f"--rollout-weight-sync nccl, but {why}")
    log.info("weights go to the rollout server through the store: %s", why)
    return None

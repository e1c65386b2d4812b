"""The RolloutClient a run's config names: the sampler in this process, or a rollout server over HTTP."""

from __future__ import annotations

from simplear.config import GRPOTrainConfig
from simplear.model.simplear_lm import SimpleARModel
from simplear.store import Store, join
from simplear.train.rollout.client import RolloutClient
from simplear.train.rollout.in_process import InProcessRolloutClient

PUSHED_WEIGHTS_DIR = "rollout-weights"
"""Where, under the run's output, an HTTP rollout client leaves the policy it pushes for the server to load."""


def rollout_client(config: GRPOTrainConfig, model: SimpleARModel, store: Store) -> RolloutClient:
    """`in_process`: a Sampler over the trainer's own model; `http`: the rollout server at `rollout_url`.

    Over HTTP the weights travel through the store (`<output>/rollout-weights`), which works on any device.
    """
    if config.rollout == "in_process":
        return InProcessRolloutClient(model, batch_size=config.rollout_batch_size)
    from simplear.train.rollout.http_client import HttpRolloutClient

    return HttpRolloutClient(str(config.rollout_url), store, join(config.output, PUSHED_WEIGHTS_DIR))

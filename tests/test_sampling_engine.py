"""One SamplingEngine behind serve, the rollout server and in-process rollouts (tiny model built in code)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from simplear.config import GRPOTrainConfig, RolloutServerConfig, SamplingConfig, ServeConfig, get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.engine import TorchEngine, build_engine
from simplear.sampling.sampler import Sampler
from simplear.serve.metrics import ServeMetrics
from simplear.serve.model import SimpleARPredictor
from simplear.store import Store
from simplear.train.grpo.rollout_function import rollout_client
from simplear.train.rollout.server import build_app, start_engine

PROMPTS = ["a red circle", "two blue squares", "a green triangle"]
GUIDANCE = {"cfg_scale": 3.0, "temperature": 0.9, "top_k": 10, "top_p": 0.95}
SEED = 70


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny-preset policy saved as a Hugging Face directory."""
    path = tmp_path_factory.mktemp("engine") / "policy"
    SimpleARModel.random_init(get_preset("tiny"), seed=11).save(path)
    return path


def serve_codes(checkpoint: Path) -> tuple[object, list[list[int]]]:
    """The KServe model's engine and the codes its v1 route answers for PROMPTS, seeds SEED + k."""
    predictor = SimpleARPredictor(ServeConfig(model_dir=str(checkpoint), codes_only=True, device="cpu"),
                                  ServeMetrics(CollectorRegistry()))
    predictor.load()
    instances = [{"prompt": prompt, "seed": SEED + k, **GUIDANCE} for k, prompt in enumerate(PROMPTS)]

    async def predict() -> dict:
        try:
            return await predictor.predict({"instances": instances})
        finally:
            predictor.stop()

    answer = asyncio.run(predict())
    return predictor.generator.engine, [prediction["codes"] for prediction in answer["predictions"]]


def test_serve_the_rollout_server_and_in_process_rollouts_share_one_engine(checkpoint: Path, tmp_path: Path) -> None:
    """All three build TorchEngine and draw the same codes for the same prompts, parameters and seeds."""
    serve_engine, served = serve_codes(checkpoint)
    num_codes = len(served[0])

    config = RolloutServerConfig(model=str(checkpoint), engine="torch", device="cpu", torch_batch_size=2)
    rollout_engine, layout = start_engine(config, checkpoint)
    body = {"prompts": PROMPTS, "n": 1, "num_codes": num_codes, "seed": SEED, "repetition_penalty": None, **GUIDANCE}
    with TestClient(build_app(rollout_engine, config, Store(), layout)) as http:
        response = http.post("/generate", json=body)
    assert response.status_code == 200, response.text
    generated = response.json()

    grpo = GRPOTrainConfig(prompts="unused.jsonl", output=str(tmp_path / "run"), init_from=str(checkpoint),
                           max_steps=1, rollout="in_process", rollout_batch_size=2)
    client = rollout_client(grpo, SimpleARModel.load(checkpoint), Store())
    requests = [Request(prompt, SamplingConfig(seed=SEED + k, **GUIDANCE)) for k, prompt in enumerate(PROMPTS)]
    rollout = client.generate(requests, num_codes)

    assert type(serve_engine) is type(rollout_engine) is type(client.engine) is TorchEngine
    assert generated["engine"] == "torch"
    assert torch.equal(torch.tensor(served), rollout.codes)
    assert torch.equal(torch.tensor(generated["codes"]), rollout.codes)
    assert torch.allclose(torch.tensor(generated["logprobs"]), rollout.logprobs, atol=1e-5)
    assert len({tuple(row) for row in served}) == len(PROMPTS), "distinct seeds draw distinct images"


def test_torch_engine_chunks_and_reloads_as_the_sampler_draws(checkpoint: Path, tmp_path: Path) -> None:
    """Chunked sampling equals one Sampler call; reload_weights makes the engine sample from another checkpoint."""
    model = SimpleARModel.load(checkpoint)
    requests = [Request(prompt, SamplingConfig(seed=SEED + k, **GUIDANCE)) for k, prompt in enumerate(PROMPTS)]
    engine = build_engine("torch", "cpu", model_dir=checkpoint, batch_size=2)
    expected = Sampler(model).sample(requests, 8)
    assert torch.equal(engine.generate(requests, 8), expected.codes)

    other = tmp_path / "other"
    SimpleARModel.random_init(get_preset("tiny"), seed=12).save(other)
    engine.reload_weights(other)
    assert torch.equal(engine.generate(requests, 8), Sampler(SimpleARModel.load(other)).generate(requests, 8))
    assert not torch.equal(engine.generate(requests, 8), expected.codes)

    with pytest.raises(ValueError, match="no requests"):
        engine.sample([], 8)
    with pytest.raises(ValueError, match="unknown engine 'jax'"):
        build_engine("jax", "cpu", model_dir=checkpoint)

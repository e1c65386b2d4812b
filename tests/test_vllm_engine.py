"""`simplear rollout-server --engine vllm` run by .venv-vllm's Python on 127.0.0.1: CFG pairs inside vLLM.

One server for the module (engine start is the slow part). The vLLM virtualenv is made by scripts/role_venvs.sh;
without it these tests fail and say so.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import torch
from helpers import assert_push_serves_trained_policy, hf_guided_logprobs, post, sampled_logprobs, serve

from simplear.config import SamplingConfig
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request, SamplingModes
from simplear.sampling.distribution import target_probs
from simplear.store import Store
from simplear.train.rollout.client import HttpRolloutClient
from simplear.train.rollout.server import RolloutServerProcess

pytestmark = pytest.mark.slow
TIMEOUT = 300


@pytest.fixture(scope="module")
def server(policies: dict[str, Path], vllm_python: Path) -> Iterator[RolloutServerProcess]:
    """One vLLM rollout server (pair scheduler, CFG processor) for the module."""
    args = ["--engine", "vllm", "--device", "cpu", "--model", str(policies["initial"])]
    with RolloutServerProcess(args, python=vllm_python, startup_timeout_s=TIMEOUT) as process:
        yield process


@pytest.fixture
def url(server: RolloutServerProcess, policies: dict[str, Path]) -> str:
    """The server's base URL, serving the initial policy."""
    serve(server.url, policies["initial"])
    return server.url


def generate(url: str, body: dict) -> dict:
    """A successful /generate answer."""
    response = post(url, "/generate", body)
    assert response.status_code == 200, response.text
    return response.json()


def failed_pairs(url: str) -> int:
    """CFG pairs the server has failed for decoding apart."""
    return requests.get(f"{url}/health", timeout=TIMEOUT).json()["cfg_pairs_failed"]


def test_health_and_seeded_generate(url: str) -> None:
    health = requests.get(f"{url}/health", timeout=TIMEOUT).json()
    assert health["engine"] == "vllm" and health["codebook_size"] == 16 and health["max_positions"] == 2048
    body = {"prompts": ["a red circle", "a blue square"], "n": 3, "num_codes": 24, "cfg_scale": 4.0, "seed": 9}
    first, again = generate(url, body), generate(url, body)
    codes = torch.tensor(first["codes"])
    assert codes.shape == (6, 24) and int(codes.min()) >= 0 and int(codes.max()) < 16
    assert first["codes"] == again["codes"] and first["engine"] == "vllm"
    assert len({tuple(row) for row in first["codes"]}) == 6
    assert all(lp <= 0 for row in first["logprobs"] for lp in row)


@pytest.mark.parametrize(
    "sampling",
    [
        {"cfg_scale": 3.0},
        {"cfg_scale": 7.5, "top_k": 4},
        {"cfg_scale": 2.0, "temperature": 0.7, "top_p": 0.8},
        {"cfg_scale": 5.0, "temperature": 0.0},
        {"cfg_scale": 1.5, "negative_prompt": "a blurry photo"},
    ],
)
def test_conditional_and_unconditional_rows_are_identical(url: str, sampling: dict) -> None:
    answer = generate(url, {"prompts": ["a red circle", "three green crosses"], "n": 2, "num_codes": 48,
                            "return_uncond": True, **sampling})
    assert answer["uncond_codes"] == answer["codes"]


def test_greedy_codes_and_logprobs_match_transformers(url: str, policies: dict[str, Path]) -> None:
    """The served next-token distribution is the guided one of the checkpoint, recomputed by plain transformers."""
    model = SimpleARModel.load(policies["initial"])
    greedy = generate(url, {"prompts": ["a red circle", "a cat"], "n": 1, "num_codes": 32, "cfg_scale": 6.0,
                            "temperature": 0.0})
    for prompt, codes in zip(["a red circle", "a cat"], greedy["codes"], strict=True):
        request = Request(prompt, SamplingConfig(cfg_scale=6.0, temperature=0.0))
        assert hf_guided_logprobs(model, request, torch.tensor(codes)).argmax(dim=-1).tolist() == codes
    params = SamplingConfig(cfg_scale=4.0, temperature=0.8, top_k=8, top_p=0.9, seed=3)
    sampled = generate(url, {"prompts": ["a green cross"], "num_codes": 32, "seeds": [3],
                             **params.model_dump(exclude={"seed", "negative_prompt"})})
    codes = torch.tensor(sampled["codes"][0])
    expected = sampled_logprobs(hf_guided_logprobs(model, Request("a green cross", params), codes), codes, params)
    assert torch.allclose(torch.tensor(sampled["logprobs"][0]), expected, atol=1e-4)


@pytest.mark.parametrize(
    "sampling",
    [
        {"cfg_scale": 3.0, "temperature": 1.0, "top_k": 0, "top_p": 1.0},
        {"cfg_scale": 6.0, "temperature": 0.7, "top_k": 6, "top_p": 0.9},
    ],
)
def test_per_seed_draws_follow_our_samplers_distribution(url: str, policies: dict[str, Path], sampling: dict) -> None:
    """800 seeds of a first code: the counts fit the sampler's target distribution (chi-square, p > 0.001)."""
    draws = 800
    answer = generate(url, {"prompts": ["a red circle"], "n": draws, "num_codes": 1, "seed": 1000, **sampling})
    params = SamplingConfig(**sampling)
    guided = hf_guided_logprobs(SimpleARModel.load(policies["initial"]), Request("a red circle", params),
                                torch.zeros(1, dtype=torch.long))
    modes = SamplingModes(scaled=True, filtered=True, greedy=False)
    probs = target_probs(guided, torch.tensor([params.temperature]), torch.tensor([params.top_k]),
                         torch.tensor([params.top_p]), modes)[0]
    probs = probs / probs.sum()
    counts = Counter(row[0] for row in answer["codes"])
    assert all(probs[code] > 0 for code in counts), "a code outside the top-k / top-p set was drawn"
    kept = probs > 0
    observed = torch.tensor([counts.get(code, 0) for code in range(16)], dtype=torch.float64)[kept]
    expected = probs[kept].double() * draws
    chi_square = ((observed - expected) ** 2 / expected).sum()
    p_value = float(torch.special.gammaincc(torch.tensor((int(kept.sum()) - 1) / 2.0, dtype=torch.float64),
                                            chi_square / 2))
    assert p_value > 1e-3, f"chi-square {float(chi_square):.1f} over {int(kept.sum())} codes: p = {p_value:.2g}"


def test_no_pair_splits_under_staggered_concurrent_load(url: str) -> None:
    """40 CFG pairs posted from 8 threads with random gaps: every pair decodes in lockstep, none is failed."""
    failed_before = failed_pairs(url)
    answers: list[dict] = []
    errors: list[str] = []

    def client_thread(worker: int) -> None:
        rng = random.Random(worker)
        for k in range(5):
            threading.Event().wait(rng.uniform(0.0, 0.05))
            body = {"prompts": [f"shape {worker} {k}"], "num_codes": 32, "cfg_scale": rng.choice([2.0, 4.0, 7.5]),
                    "temperature": rng.choice([0.0, 0.8, 1.0]), "seed": 100 * worker + k, "return_uncond": True}
            response = post(url, "/generate", body)
            (answers.append(response.json()) if response.status_code == 200 else errors.append(response.text))

    threads = [threading.Thread(target=client_thread, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    assert not errors and len(answers) == 40
    assert all(answer["uncond_codes"] == answer["codes"] for answer in answers)
    assert failed_pairs(url) == failed_before


def test_a_split_pair_is_failed_loudly(url: str) -> None:
    """Unconditional rows forced in 0.3 s late and unpaired: the pairs are refused, never returned as codes."""
    failed_before = failed_pairs(url)
    response = post(url, "/generate", {"prompts": ["a", "b", "c"], "num_codes": 16, "cfg_scale": 3.0,
                                       "force_split_s": 0.3})
    assert response.status_code == 500
    assert "3 of 3 CFG pairs did not decode in lockstep" in response.json()["error"]
    assert failed_pairs(url) == failed_before + 3
    assert generate(url, {"prompts": ["a"], "num_codes": 16, "cfg_scale": 3.0})["codes"]


def test_weight_push_serves_the_trainers_distribution(url: str, policies: dict[str, Path], tmp_path: Path) -> None:
    """Push through the store, reload in place: greedy codes become transformers' argmax on the new weights."""
    client = HttpRolloutClient(url, Store(), str(tmp_path / "pushed"), timeout_s=TIMEOUT, attempts=2)
    version = assert_push_serves_trained_policy(client, policies["trained"], 24)
    reload = post(url, "/weights", {"uri": str(policies["trained"])}).json()
    assert reload["policy_version"] == version + 1 and reload["seconds"] < 30


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompts": ["a"], "num_codes": 4, "top_p": 0}, "top_p"),
        ({"prompts": ["a"], "num_codes": 4000}, "positions"),
        ({"prompts": ["a"], "num_codes": 4, "force_split_s": 11}, "force_split_s"),
    ],
)
def test_bad_requests_get_400(url: str, body: dict, message: str) -> None:
    response = post(url, "/generate", body)
    assert response.status_code == 400 and message in response.json()["error"]

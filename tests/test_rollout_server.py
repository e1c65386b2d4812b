"""`simplear rollout-server --engine torch` as a real server on 127.0.0.1 (tiny preset), through HttpRolloutClient."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import torch
from helpers import assert_push_serves_trained_policy, hf_guided_logprobs, post, sampled_logprobs, serve

from simplear.child_server import free_port
from simplear.config import SamplingConfig, get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler
from simplear.store import Store
from simplear.train.rollout.client import HttpRolloutClient, RolloutServerError
from simplear.train.rollout.server import RolloutServerProcess

pytestmark = pytest.mark.slow
TIMEOUT = 120


def tiny_model(seed: int) -> SimpleARModel:
    """A randomly initialised tiny-preset policy."""
    return SimpleARModel.random_init(get_preset("tiny"), seed=seed)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's scratch directory: named, not yet created."""
    return tmp_path_factory.mktemp("rollout") / "not" / "yet" / "there"


@pytest.fixture(scope="module")
def server(policies: dict[str, Path], scratch: Path) -> Iterator[RolloutServerProcess]:
    """One torch rollout server for the module."""
    args = ["--engine", "torch", "--model", str(policies["initial"]), "--scratch", str(scratch)]
    with RolloutServerProcess(args) as process:
        yield process


@pytest.fixture
def client(server: RolloutServerProcess, tmp_path: Path) -> HttpRolloutClient:
    """A client whose weight pushes go to a fresh local store prefix."""
    return HttpRolloutClient(server.url, Store(), str(tmp_path / "pushed"), timeout_s=TIMEOUT, attempts=2)


def test_health_names_the_engine_and_version(server: RolloutServerProcess, scratch: Path) -> None:
    assert scratch.is_dir() and not any(scratch.iterdir()), "scratch made; a local model is read in place, not copied"
    health = requests.get(f"{server.url}/health", timeout=TIMEOUT).json()
    assert health["status"] == "ok" and health["engine"] == "torch"
    assert health["codebook_size"] == 16 and health["max_positions"] == 2048
    assert isinstance(health["policy_version"], int)


def test_generate_equals_the_projects_sampler(server: RolloutServerProcess, policies: dict[str, Path]) -> None:
    """A group of n images per prompt, prompt-major, seeds seed + k: exactly what Sampler.sample draws."""
    serve(server.url, policies["initial"])
    body = {"prompts": ["a red circle", "two blue squares"], "n": 3, "num_codes": 12, "cfg_scale": 3.0,
            "temperature": 0.9, "top_k": 10, "top_p": 0.95, "seed": 40}
    answer = post(server.url, "/generate", body).json()
    requests_ = [Request(p, SamplingConfig(cfg_scale=3.0, temperature=0.9, top_k=10, top_p=0.95, seed=40 + k))
                 for k, p in enumerate(["a red circle"] * 3 + ["two blue squares"] * 3)]
    expected = Sampler(SimpleARModel.load(policies["initial"])).sample(requests_, 12)
    assert answer["engine"] == "torch"
    assert torch.equal(torch.tensor(answer["codes"]), expected.codes)
    assert torch.allclose(torch.tensor(answer["logprobs"]), expected.logprobs, atol=1e-5)
    assert len({tuple(row) for row in answer["codes"]}) > 1


def test_logprobs_match_transformers(server: RolloutServerProcess, policies: dict[str, Path]) -> None:
    """The returned log-probabilities are those of the guided, filtered distribution the codes were drawn from."""
    serve(server.url, policies["initial"])
    params = SamplingConfig(cfg_scale=4.0, temperature=0.8, top_k=8, top_p=0.9, seed=5)
    body = {"prompts": ["a green cross"], "num_codes": 16, "seeds": [5],
            **params.model_dump(exclude={"seed", "negative_prompt"})}
    answer = post(server.url, "/generate", body).json()
    codes = torch.tensor(answer["codes"][0])
    guided = hf_guided_logprobs(SimpleARModel.load(policies["initial"]), Request("a green cross", params), codes)
    assert torch.allclose(torch.tensor(answer["logprobs"][0]), sampled_logprobs(guided, codes, params), atol=1e-4)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompts": [], "num_codes": 4}, "prompts"),
        ({"prompts": ["a"], "num_codes": 0}, "num_codes"),
        ({"prompts": ["a"], "num_codes": 4, "top_p": 0}, "top_p"),
        ({"prompts": ["a"], "num_codes": 4, "cfg_scale": -1}, "cfg_scale"),
        ({"prompts": ["a", "b"], "n": 2, "num_codes": 4, "seeds": [1, 2]}, "seeds has 2 entries"),
        ({"prompts": ["   "], "num_codes": 4}, "prompts[0] is empty"),
        ({"prompts": ["a"], "num_codes": 4000}, "positions"),
        ({"prompts": ["a"], "num_codes": 4, "colour": "red"}, "colour"),
        ({"prompts": ["a"], "num_codes": 4, "return_uncond": True}, "vllm engine"),
        ({"prompts": ["a"] * 600, "n": 2, "num_codes": 4}, "at most 1024"),
    ],
)
def test_bad_generate_requests_get_400(server: RolloutServerProcess, body: dict, message: str) -> None:
    response = post(server.url, "/generate", body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_weight_push_serves_the_trainers_distribution(client: HttpRolloutClient, policies: dict[str, Path]) -> None:
    """After a push, greedy codes are transformers' argmax on the pushed weights, and the version went up by one."""
    serve(client.base_url, policies["initial"])
    assert_push_serves_trained_policy(client, policies["trained"], 16)


def test_policy_version_increments_and_old_pushes_are_removed(client: HttpRolloutClient, tmp_path: Path) -> None:
    start = client.health()["policy_version"]
    model = tiny_model(2)
    assert [client.push_weights(model) for _ in range(3)] == [start + 1, start + 2, start + 3]
    assert client.health()["policy_version"] == start + 3
    assert client.generate([Request("a dot", SamplingConfig(seed=1))], 4).policy_version == start + 3
    assert len(list((tmp_path / "pushed").iterdir())) == 1


def test_push_of_an_incomplete_checkpoint_is_refused(server: RolloutServerProcess, tmp_path: Path) -> None:
    version = requests.get(f"{server.url}/health", timeout=TIMEOUT).json()["policy_version"]
    tiny_model(3).lm.save_pretrained(tmp_path / "no-manifest")
    response = post(server.url, "/weights", {"uri": str(tmp_path / "no-manifest")})
    assert response.status_code == 400 and "no manifest.json" in response.json()["error"]
    assert requests.get(f"{server.url}/health", timeout=TIMEOUT).json()["policy_version"] == version


def test_client_reports_a_refused_request_without_retrying(client: HttpRolloutClient) -> None:
    start = time.monotonic()
    with pytest.raises(RolloutServerError, match=r"refused the request: HTTP 400: .*positions"):
        client.generate([Request("a", SamplingConfig())], 5000)
    assert time.monotonic() - start < client.backoff_s


def test_server_dying_mid_run_gives_a_clear_error(policies: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL during a long rollout: the client retries, then names the URL and the last error; it never hangs."""
    process = RolloutServerProcess(["--engine", "torch", "--model", str(policies["initial"])]).launch().wait_ready()
    client = HttpRolloutClient(process.url, Store(), str(tmp_path), timeout_s=TIMEOUT, attempts=3, backoff_s=0.2)
    outcome: list[BaseException] = []

    def rollout() -> None:
        try:
            client.generate([Request("a long rollout", SamplingConfig(seed=k)) for k in range(8)], 1000)
        except BaseException as err:
            outcome.append(err)

    worker = threading.Thread(target=rollout)
    try:
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive(), "the rollout finished before the server could be killed"
        process.kill()
        worker.join(timeout=60)
    finally:
        process.stop()
        process.log_path.unlink(missing_ok=True)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], RolloutServerError)
    assert f"rollout server {process.url}/generate failed after 3 attempts" in str(outcome[0])
    assert "ConnectionError" in str(outcome[0])


def test_client_times_out_on_a_server_that_never_answers(tmp_path: Path) -> None:
    """A peer that accepts connections but never replies costs attempts x timeout_s, then a clear error."""
    port = free_port()
    held: list[socket.socket] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        listener.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except TimeoutError:
                    continue

        acceptor = threading.Thread(target=accept)
        acceptor.start()
        client = HttpRolloutClient(f"http://127.0.0.1:{port}", Store(), str(tmp_path), timeout_s=0.5, attempts=2,
                                   backoff_s=0.1)
        start = time.monotonic()
        try:
            with pytest.raises(RolloutServerError, match=r"failed after 2 attempts; last error: ReadTimeout"):
                client.generate([Request("a", SamplingConfig())], 4)
        finally:
            stop.set()
            acceptor.join()
            for connection in held:
                connection.close()
    assert time.monotonic() - start < 10

"""The RolloutClient seam (codes with log-probabilities and policy version; weight pushes) and its HTTP client."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import requests
import torch

from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.engine import TorchEngine
from simplear.store import Store
from simplear.train.rollout.weight_sync import NcclWeightPush, StoreWeightPush, WeightLayoutMismatch

log = logging.getLogger(__name__)


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


class InProcessRolloutClient:
    """A RolloutClient over the torch SamplingEngine on the trainer's model; a push makes it sample the new weights."""

    def __init__(self, model: SimpleARModel, batch_size: int = 64) -> None:
        self.engine = TorchEngine(model, batch_size)
        self.version = 0

    def generate(self, requests: list[Request], num_codes: int) -> Rollout:
        """Codes and log-probabilities for every request, in engine chunks of `batch_size`."""
        samples = self.engine.sample(requests, num_codes)
        return Rollout(samples.codes, samples.logprobs, self.version)

    def push_weights(self, model: SimpleARModel) -> int:
        """Sample from `model` from now on."""
        self.engine.use_model(model)
        self.version += 1
        return self.version


class RolloutServerError(RuntimeError):
    """The rollout server refused a request, or could not be reached or answered 5xx on every attempt."""


class HttpRolloutClient:
    """Rollouts from a rollout server; weights pushed through the store, or over NCCL on GPU when `nccl` is given.

    Connection errors, timeouts and 5xx answers are retried `attempts` times with exponential backoff; a 4xx is
    not retried. Every call has a connect and a read timeout, so a dead server is an error, never a hang.
    """

    def __init__(
        self, base_url: str, store: Store, weights_uri_prefix: str, timeout_s: float = 600.0, attempts: int = 3,
        backoff_s: float = 1.0, connect_timeout_s: float = 5.0, nccl: NcclWeightPush | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.weights = StoreWeightPush(store, weights_uri_prefix)
        self.nccl = nccl

    def health(self) -> dict[str, Any]:
        """The server's /health answer."""
        return self._call("GET", "/health")

    def generate(self, requests: list[Request], num_codes: int) -> Rollout:
        """Codes and log-probabilities per request; requests sharing sampling parameters go in one call.

        The policy version is the oldest that drew any of them.
        """
        if not requests:
            raise ValueError("no requests to sample")
        codes, logprobs, versions = [], [], []
        for _, run in itertools.groupby(requests, key=lambda r: (r.prefix, r.params.model_dump(exclude={"seed"}))):
            group = list(run)
            answer = self._call("POST", "/generate", _generate_body(group, num_codes))
            shape = (len(group), num_codes)
            codes.append(_tensor(answer["codes"], torch.long, shape, self.base_url))
            logprobs.append(_tensor(answer["logprobs"], torch.float32, shape, self.base_url))
            versions.append(int(answer["policy_version"]))
        return Rollout(torch.cat(codes), torch.cat(logprobs), min(versions))

    def push_weights(self, model: SimpleARModel) -> int:
        """Make the server sample from `model`'s weights; returns the server's new policy version.

        Over NCCL when given; a push that fails there (not a refused layout: that is the trainer's error) falls back
        to the store for the rest of the run, whose full reload also repairs whatever a broken broadcast left.
        """
        if self.nccl is not None:
            try:
                return self.nccl.push(model)
            except WeightLayoutMismatch:
                raise
            except Exception as exc:
                log.warning("NCCL weight push to %s failed (%s: %s); pushing through the store from now on",
                            self.base_url, type(exc).__name__, exc)
                self.nccl = None
        uri = self.weights.save(model)
        version = int(self._call("POST", "/weights", {"uri": uri})["policy_version"])
        self.weights.served_now(uri)
        return version

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with retries; RolloutServerError naming the URL and the last error when it cannot succeed."""
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = requests.request(method, url, json=body, timeout=(self.connect_timeout_s, self.timeout_s))
            except (requests.ConnectionError, requests.Timeout) as err:
                last = f"{type(err).__name__}: {_short(str(err))}"
                continue
            if response.status_code < 400:
                return response.json()
            last = f"HTTP {response.status_code}: {_short(_error_text(response))}"
            if response.status_code < 500:
                raise RolloutServerError(f"rollout server {url} refused the request: {last}")
        raise RolloutServerError(f"rollout server {url} failed after {self.attempts} attempts; last error: {last}")


def _generate_body(group: list[Request], num_codes: int) -> dict[str, Any]:
    """One /generate body for requests that share their prefix and every sampling parameter but the seed."""
    params = group[0].params.model_dump(exclude={"seed"})
    return {"prompts": [r.prompt for r in group], "prefix": group[0].prefix, "n": 1, "num_codes": num_codes,
            "seeds": [r.params.seed for r in group], **params}


def _tensor(rows: list[list[float]], dtype: torch.dtype, shape: tuple[int, int], url: str) -> torch.Tensor:
    """A response matrix as a tensor of the expected shape."""
    tensor = torch.tensor(rows, dtype=dtype)
    if tuple(tensor.shape) != shape:
        raise RolloutServerError(f"rollout server {url} answered a {tuple(tensor.shape)} matrix, expected {shape}")
    return tensor


def _error_text(response: requests.Response) -> str:
    """The server's `error` field, or the raw body."""
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text


def _short(text: str, limit: int = 400) -> str:
    """At most `limit` characters of an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."

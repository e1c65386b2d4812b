"""The rollout server's FastAPI app: /generate, /weights (and its NCCL variant), /health, with a policy version."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from simplear.config import RolloutServerConfig
from simplear.sampling.vllm_engine import CfgPairSplit, VllmEngine
from simplear.store import Store, StoreError
from simplear.train.rollout.checkpoint_fetch import local_checkpoint
from simplear.train.rollout.http_schemas import (
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    NcclInitRequest,
    NcclUpdateRequest,
    WeightsRequest,
    WeightsResponse,
)
from simplear.train.rollout.policy_lock import PolicyLock
from simplear.train.rollout.request_checks import BadRequest, describe, to_requests
from simplear.train.rollout.rollout_engine import RolloutEngine


class ServedPolicy:
    """The engine, the version of the weights it samples from, and the lock that keeps rollouts and updates apart."""

    def __init__(self, engine: RolloutEngine) -> None:
        self.engine = engine
        self.version = 0
        self.lock = PolicyLock()
        self.pairs_failed = 0


def build_app(engine: RolloutEngine, config: RolloutServerConfig, store: Store) -> FastAPI:
    """The HTTP API over one engine; the engine is shut down with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.shutdown()

    app = FastAPI(title="simplear rollout server", lifespan=lifespan)
    policy = ServedPolicy(engine)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": describe(err.errors())}, status_code=400)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, err: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.exception_handler(CfgPairSplit)
    async def pair_split(request: Request, err: CfgPairSplit) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=500)

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"error": f"{type(err).__name__}: {err}"}, status_code=500)

    @app.get("/health")
    def health() -> HealthResponse:
        """Alive, which engine, which policy version."""
        return HealthResponse(status="ok", engine=engine.name, policy_version=policy.version,
                              max_positions=engine.max_positions, codebook_size=engine.vocab_size,
                              cfg_pairs_failed=policy.pairs_failed)

    @app.post("/generate")
    def generate(body: GenerateRequest) -> GenerateResponse:
        """Sample every image of the request from one policy version."""
        requests = to_requests(body, engine, config)
        with policy.lock.sampling():
            version = policy.version
            try:
                if body.force_split_s:
                    samples = engine.sample(requests, body.num_codes, stagger_s=body.force_split_s)
                else:
                    samples = engine.sample(requests, body.num_codes)
            except CfgPairSplit as err:
                policy.pairs_failed += err.pairs
                raise
        uncond = getattr(samples, "uncond_codes", None) if body.return_uncond else None
        return GenerateResponse(codes=samples.codes.tolist(), logprobs=samples.logprobs.tolist(),
                                policy_version=version, engine=engine.name,
                                uncond_codes=None if uncond is None else uncond.tolist())

    @app.post("/weights")
    def weights(body: WeightsRequest) -> WeightsResponse:
        """Reload the policy in place from a checkpoint the trainer saved; bumps the policy version."""
        start = time.perf_counter()
        try:
            with local_checkpoint(store, body.uri, config.scratch) as directory, policy.lock.updating():
                engine.reload_weights(directory)
                policy.version += 1
        except (StoreError, FileNotFoundError, ValueError) as err:
            raise BadRequest(f"cannot load weights from {body.uri}: {err}") from None
        return WeightsResponse(policy_version=policy.version, seconds=time.perf_counter() - start)

    @app.post("/weights/nccl/init")
    def nccl_init(body: NcclInitRequest) -> dict:
        """Join the trainer's NCCL group (vllm engine started with weight_transfer nccl, GPU only)."""
        _nccl_engine(engine, config).init_weight_transfer(body.init_info)
        return {"status": "ok"}

    @app.post("/weights/nccl/update")
    def nccl_update(body: NcclUpdateRequest) -> WeightsResponse:
        """Receive the trainer's broadcast of every parameter and load it; bumps the policy version."""
        start = time.perf_counter()
        with policy.lock.updating():
            _nccl_engine(engine, config).receive_weights(body.update_info)
            policy.version += 1
        return WeightsResponse(policy_version=policy.version, seconds=time.perf_counter() - start)

    return app


def _nccl_engine(engine: RolloutEngine, config: RolloutServerConfig) -> VllmEngine:
    """The engine, if it can take NCCL weight broadcasts; BadRequest otherwise."""
    if not isinstance(engine, VllmEngine) or config.vllm.weight_transfer != "nccl":
        raise BadRequest("NCCL weight transfer needs --engine vllm --weight-transfer nccl (on GPU)")
    return engine

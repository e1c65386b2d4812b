"""The rollout server's FastAPI app: /generate, /weights (store reload) and /weights/nccl/* (GPU broadcast),
/weights/layout, /health, with a policy version.

Every push is checked against the served layout (weight_layout.py) before anything is loaded: a refused push leaves
the engine serving the weights it has, at the same policy version.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from simplear.config import RolloutServerConfig
from simplear.sampling.vllm_engine import CfgPairSplit, VllmEngine
from simplear.store import ArtifactNotFound, Store, StoreError
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
from simplear.train.rollout.weight_layout import (
    Layout,
    WeightLayoutMismatch,
    check_layout,
    checkpoint_layout,
    layout_to_json,
)

NCCL_WORKERS = 1  # vLLM workers of the engine (no tensor parallelism): the trainer makes the NCCL group one larger
INIT_FIELDS = frozenset({"master_address", "master_port", "rank_offset", "world_size", "packed"})


class ServedPolicy:
    """The engine, the version of the weights it samples from, and the lock that keeps rollouts and updates apart."""

    def __init__(self, engine: RolloutEngine, layout: Layout) -> None:
        self.engine = engine
        self.layout = layout
        self.version = 0
        self.lock = PolicyLock()
        self.pairs_failed = 0
        self.nccl_joined = False
        self.nccl_pending: dict | None = None


def nccl_refusal(engine: RolloutEngine, config: RolloutServerConfig) -> str | None:
    """Why this server takes no NCCL pushes, or None when it does (vLLM engine, NCCL weight transfer, a GPU)."""
    if not isinstance(engine, VllmEngine):
        return f"the {engine.name} engine takes weights through the store only (NCCL needs --engine vllm)"
    if config.vllm.weight_transfer != "nccl":
        return "the server was started with --weight-transfer store"
    if not (config.device or "").startswith("cuda"):
        return f"NCCL needs CUDA and the engine runs on {config.device}: push through the store (/weights)"
    return None


def build_app(engine: RolloutEngine, config: RolloutServerConfig, store: Store, layout: Layout) -> FastAPI:
    """The HTTP API over one engine serving `layout`; the engine is shut down with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.shutdown()

    app = FastAPI(title="simplear rollout server", lifespan=lifespan)
    policy = ServedPolicy(engine, layout)
    refusal = nccl_refusal(engine, config)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": describe(err.errors())}, status_code=400)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, err: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.exception_handler(WeightLayoutMismatch)
    async def mismatch(request: Request, err: WeightLayoutMismatch) -> JSONResponse:
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
                              cfg_pairs_failed=policy.pairs_failed,
                              weight_sync=["store"] if refusal else ["store", "nccl"], nccl_world_size=NCCL_WORKERS)

    @app.get("/weights/layout")
    def weights_layout() -> dict:
        """Name, dtype and shape of every tensor a push must bring (an NCCL push in exactly these dtypes)."""
        return {"parameters": layout_to_json(policy.layout)}

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
        """Reload the policy in place from a checkpoint the trainer saved, once its tensors match the served layout;
        bumps the policy version."""
        start = time.perf_counter()
        try:
            if not store.artifact_exists(body.uri):
                raise ArtifactNotFound(f"no complete checkpoint at {body.uri}: it has no manifest.json")
            with store.local_dir(body.uri, config.scratch) as directory:
                check_layout(policy.layout, checkpoint_layout(directory), exact_dtype=False,
                             what=f"checkpoint {body.uri}")
                with policy.lock.updating():
                    engine.reload_weights(directory)
                    policy.version += 1
        except WeightLayoutMismatch:
            raise
        except (StoreError, FileNotFoundError, ValueError) as err:
            raise BadRequest(f"cannot load weights from {body.uri}: {err}") from None
        return WeightsResponse(policy_version=policy.version, seconds=time.perf_counter() - start)

    @app.post("/weights/nccl/init")
    def nccl_init(body: NcclInitRequest) -> dict:
        """Join the trainer's NCCL group as its ranks after the trainer's rank 0 (vLLM's weight transfer engine)."""
        if refusal:
            raise BadRequest(f"no NCCL weight push here: {refusal}")
        unknown = sorted(body.init_info.keys() - INIT_FIELDS)
        missing = sorted(INIT_FIELDS - {"packed"} - body.init_info.keys())
        if unknown or missing:
            raise BadRequest(f"init_info needs {sorted(INIT_FIELDS)}: missing {missing}, unknown {unknown}")
        assert isinstance(engine, VllmEngine)
        engine.init_weight_transfer(body.init_info)
        policy.nccl_joined = True
        return {"status": "ok"}

    @app.post("/weights/nccl/prepare")
    def nccl_prepare(body: NcclUpdateRequest) -> dict:
        """Check the tensors the trainer is about to broadcast (names, shapes, dtypes) against the served layout;
        400 with what differs, before any NCCL traffic."""
        info = body.update_info
        try:
            announced = {name: (dtype, tuple(shape)) for name, dtype, shape in
                         zip(info["names"], info["dtype_names"], info["shapes"], strict=True)}
        except (KeyError, TypeError, ValueError):
            raise BadRequest("update_info needs equally long lists names, dtype_names and shapes") from None
        check_layout(policy.layout, announced, exact_dtype=True, what="the announced NCCL push")
        if refusal:
            raise BadRequest(f"no NCCL weight push here: {refusal}")
        if not policy.nccl_joined:
            raise BadRequest("no NCCL group yet: POST /weights/nccl/init first")
        policy.nccl_pending = {"names": info["names"], "dtype_names": info["dtype_names"], "shapes": info["shapes"]}
        return {"status": "ok", "tensors": len(announced)}

    @app.post("/weights/nccl/update")
    def nccl_update() -> WeightsResponse:
        """Receive the broadcast of the prepared tensors and load them; bumps the policy version."""
        if policy.nccl_pending is None:
            raise BadRequest("no prepared NCCL push: POST /weights/nccl/prepare first")
        update, policy.nccl_pending = policy.nccl_pending, None
        start = time.perf_counter()
        assert isinstance(engine, VllmEngine)
        with policy.lock.updating():
            engine.receive_weights(update)
            policy.version += 1
        return WeightsResponse(policy_version=policy.version, seconds=time.perf_counter() - start)

    return app

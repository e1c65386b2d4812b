"""`simplear rollout-server`: rollouts (codes + log-probabilities) and weight pushes over HTTP, with a policy version.

The FastAPI app serves /generate, /weights (store reload) and /weights/nccl/* (GPU broadcast), /weights/layout and
/health. Every push is checked against the served layout (weight_sync.py) before anything is loaded: a refused push
leaves the engine serving the weights it has, at the same policy version. Many rollouts may sample the current policy
at once; a weight update waits for them and runs alone.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simplear.child_server import ChildServer
from simplear.config import RolloutServerConfig, SamplingConfig, VllmEngineConfig
from simplear.model.prompt import GENERATION_PREFIX, NEGATIVE_TEXT
from simplear.sampling.batch import Request
from simplear.sampling.engine import SamplingEngine, build_engine, engine_dtype, resolved_device
from simplear.sampling.vllm.engine import CfgPairSplit, VllmEngine
from simplear.store import ArtifactNotFound, Store, StoreError
from simplear.train.rollout.weight_sync import (
    Layout,
    WeightLayoutMismatch,
    check_layout,
    checkpoint_layout,
    layout_to_json,
    served_layout,
)

_DEFAULTS = SamplingConfig()
NCCL_WORKERS = 1  # vLLM workers of the engine (no tensor parallelism): the trainer makes the NCCL group one larger
INIT_FIELDS = frozenset({"master_address", "master_port", "rank_offset", "world_size", "packed"})


class Body(BaseModel):
    """Base of every body: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class GenerateRequest(Body):
    """Prompts, images per prompt, codes per image and sampling parameters shared by every image.

    Image k (prompt k // n, sample k % n) uses seeds[k], or seed + k when seeds is absent. The sampling
    fields are checked against SamplingConfig's bounds.
    """

    prompts: list[str] = Field(min_length=1, description="captions; the server adds the t2i template")
    prefix: str = Field(default=GENERATION_PREFIX, description="put before every caption")
    n: int = Field(default=1, ge=1, description="images per prompt (a GRPO group)")
    num_codes: int = Field(gt=0, description="visual codes per image")
    cfg_scale: float = _DEFAULTS.cfg_scale
    temperature: float = _DEFAULTS.temperature
    top_k: int = _DEFAULTS.top_k
    top_p: float = _DEFAULTS.top_p
    negative_prompt: str | None = None
    repetition_penalty: float | None = Field(default=1.0, description="None: the checkpoint's generation_config.json")
    seed: int = _DEFAULTS.seed
    seeds: list[int] | None = Field(default=None, description="one per image, prompt-major")
    return_uncond: bool = Field(default=False, description="vllm only: also return the unconditional rows' codes")
    force_split_s: float = Field(
        default=0.0, ge=0.0, le=10.0,
        description="vllm only, fault injection for tests: add unconditional rows this much later, unpaired",
    )


class GenerateResponse(Body):
    """Codes and their sampling log-probabilities, one row per image, and the policy version that drew them."""

    codes: list[list[int]]
    logprobs: list[list[float]]
    policy_version: int
    engine: str
    uncond_codes: list[list[int]] | None = None


class WeightsRequest(Body):
    """Where the trainer saved the new policy (a complete checkpoint artifact: manifest last)."""

    uri: str = Field(min_length=1)


class NcclInitRequest(Body):
    """vLLM weight-transfer init info (master address and port, rank offset, world size) for the NCCL group."""

    init_info: dict[str, Any]


class NcclUpdateRequest(Body):
    """vLLM weight-transfer update info: names, dtype_names and shapes of the parameters about to be broadcast."""

    update_info: dict[str, Any]


class WeightsResponse(Body):
    """The policy version now served and how long loading took."""

    policy_version: int
    seconds: float


class HealthResponse(Body):
    """Liveness, engine, policy version, CFG pairs failed for decoding apart, and how weights may be pushed."""

    status: str
    engine: str
    policy_version: int
    max_positions: int
    codebook_size: int
    cfg_pairs_failed: int
    weight_sync: list[str] = Field(description="how pushes may arrive: store, and nccl where the server takes it")
    nccl_world_size: int = Field(description="the server's ranks in an NCCL weight-push group")


class PolicyLock:
    """A readers-writer lock that prefers writers, so a weight push is not starved by a stream of rollouts."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def sampling(self) -> Iterator[None]:
        """Hold the policy for one rollout; others may sample at the same time."""
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def updating(self) -> Iterator[None]:
        """Hold the policy alone, after every rollout in flight has finished."""
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class BadRequest(ValueError):
    """A request the server refuses: answered 400 with this message."""


def to_requests(body: GenerateRequest, engine: SamplingEngine, config: RolloutServerConfig) -> list[Request]:
    """One Request per image, prompt-major, each with its own seed; BadRequest on anything out of bounds."""
    images = len(body.prompts) * body.n
    if images > config.max_images_per_request:
        raise BadRequest(f"{images} images requested; at most {config.max_images_per_request} per request")
    if body.seeds is not None and len(body.seeds) != images:
        raise BadRequest(f"seeds has {len(body.seeds)} entries but {len(body.prompts)} prompts x n={body.n} "
                         f"make {images} images")
    if (body.return_uncond or body.force_split_s) and engine.name != "vllm":
        raise BadRequest(f"return_uncond and force_split_s only apply to the vllm engine; this is {engine.name}")
    _check_lengths(body, engine, config)
    seeds = body.seeds or [body.seed + k for k in range(images)]
    try:
        params = [SamplingConfig(cfg_scale=body.cfg_scale, temperature=body.temperature, top_k=body.top_k,
                                 top_p=body.top_p, seed=seed, negative_prompt=body.negative_prompt,
                                 repetition_penalty=body.repetition_penalty) for seed in seeds]
    except ValidationError as err:
        raise BadRequest(describe(err.errors())) from None
    return [Request(prompt=body.prompts[k // body.n], params=params[k], prefix=body.prefix) for k in range(images)]


def _check_lengths(body: GenerateRequest, engine: SamplingEngine, config: RolloutServerConfig) -> None:
    """Prompts non-empty and short enough that prompt + codes fit the model's positions."""
    texts = [*body.prompts, NEGATIVE_TEXT if body.negative_prompt is None else body.negative_prompt]
    for index, text in enumerate(texts):
        name = "negative_prompt" if index == len(body.prompts) else f"prompts[{index}]"
        if index < len(body.prompts) and not text.strip():
            raise BadRequest(f"{name} is empty")
        if len(text) > config.max_prompt_chars:
            raise BadRequest(f"{name} has {len(text)} characters; at most {config.max_prompt_chars}")
        needed = engine.prompt_tokens(text) + body.num_codes
        if needed > engine.max_positions:
            raise BadRequest(f"{name} takes {needed - body.num_codes} tokens; with num_codes={body.num_codes} that "
                             f"is {needed} positions, the model has {engine.max_positions}")


def describe(errors: Sequence[dict[str, Any]]) -> str:
    """Pydantic / FastAPI validation errors as one line: `field: message; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors)


class ServedPolicy:
    """The engine, the version of the weights it samples from, and the lock that keeps rollouts and updates apart."""

    def __init__(self, engine: SamplingEngine, layout: Layout) -> None:
        self.engine = engine
        self.layout = layout
        self.version = 0
        self.lock = PolicyLock()
        self.pairs_failed = 0
        self.nccl_joined = False
        self.nccl_pending: dict | None = None


def nccl_refusal(engine: SamplingEngine, config: RolloutServerConfig) -> str | None:
    """Why this server takes no NCCL pushes, or None when it does (vLLM engine, NCCL weight transfer, a GPU)."""
    if not isinstance(engine, VllmEngine):
        return f"the {engine.name} engine takes weights through the store only (NCCL needs --engine vllm)"
    if config.vllm.weight_transfer != "nccl":
        return "the server was started with --weight-transfer store"
    if not (config.device or "").startswith("cuda"):
        return f"NCCL needs CUDA and the engine runs on {config.device}: push through the store (/weights)"
    return None


def build_app(engine: SamplingEngine, config: RolloutServerConfig, store: Store, layout: Layout) -> FastAPI:
    """The HTTP API over one engine serving `layout`; the engine is shut down with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.shutdown()

    app = FastAPI(title="simplear rollout server", lifespan=lifespan)
    policy = ServedPolicy(engine, layout)
    refusal = nccl_refusal(engine, config)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: HttpRequest, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": describe(err.errors())}, status_code=400)

    @app.exception_handler(BadRequest)
    async def bad_request(request: HttpRequest, err: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.exception_handler(WeightLayoutMismatch)
    async def mismatch(request: HttpRequest, err: WeightLayoutMismatch) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.exception_handler(CfgPairSplit)
    async def pair_split(request: HttpRequest, err: CfgPairSplit) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=500)

    @app.exception_handler(Exception)
    async def failed(request: HttpRequest, err: Exception) -> JSONResponse:
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, engine, address, limits and the vLLM engine's settings."""
    defaults, vllm = RolloutServerConfig.model_fields, VllmEngineConfig()
    parser.add_argument("--model", required=True, help="initial policy: checkpoint directory or store URI")
    parser.add_argument("--engine", choices=["torch", "vllm"], default="torch",
                        help="vllm needs vLLM (the rollout image; .venv-vllm here)")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--host", action="append", dest="hosts",
                        help="address to bind, repeatable (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=defaults["port"].default)
    parser.add_argument("--max-images-per-request", type=int, default=defaults["max_images_per_request"].default)
    parser.add_argument("--torch-batch-size", type=int, default=defaults["torch_batch_size"].default)
    parser.add_argument("--scratch", help="directory for downloaded weights (default: a temp dir)")
    parser.add_argument("--vllm-kv-cache-gib", type=int, default=vllm.kv_cache_gib)
    parser.add_argument("--vllm-gpu-memory-utilization", type=float, default=vllm.gpu_memory_utilization)
    parser.add_argument("--vllm-max-num-seqs", type=int, default=vllm.max_num_seqs)
    parser.add_argument("--vllm-max-model-len", type=int)
    parser.add_argument("--vllm-dtype", choices=["auto", "float32", "bfloat16"], default=vllm.dtype)
    parser.add_argument("--vllm-scheduler", choices=["pair", "vllm"], default=vllm.scheduler,
                        help="pair: CFG pairs admitted together; vllm: vLLM's own (splits pairs; for comparison)")
    parser.add_argument("--weight-transfer", choices=["store", "nccl", "auto"], default=vllm.weight_transfer,
                        help="nccl: also take NCCL broadcasts from trainer rank 0 (vllm on GPU); auto: nccl when the "
                             "engine is vllm on a GPU, else store")


def config_from_args(args: argparse.Namespace) -> RolloutServerConfig:
    """The validated config, or a one-line exit naming the bad value."""
    device = args.device or resolved_device()
    transfer = args.weight_transfer
    if transfer == "auto":
        transfer = "nccl" if args.engine == "vllm" and device.startswith("cuda") else "store"
    try:
        return RolloutServerConfig(
            model=args.model, engine=args.engine, device=device, hosts=tuple(args.hosts or ("127.0.0.1",)),
            port=args.port,
            max_images_per_request=args.max_images_per_request, torch_batch_size=args.torch_batch_size,
            scratch=args.scratch,
            vllm=VllmEngineConfig(
                kv_cache_gib=args.vllm_kv_cache_gib, gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                max_num_seqs=args.vllm_max_num_seqs, max_model_len=args.vllm_max_model_len, dtype=args.vllm_dtype,
                scheduler=args.vllm_scheduler, weight_transfer=transfer,
            ),
        )
    except ValidationError as err:
        raise SystemExit(f"simplear rollout-server: {err}") from None


def start_engine(config: RolloutServerConfig, model_dir: Path) -> tuple[SamplingEngine, Layout]:
    """The SamplingEngine the config names over a local checkpoint, and the layout of the weights it serves."""
    device = config.device or resolved_device()
    engine = build_engine(config.engine, device, model_dir=model_dir, batch_size=config.torch_batch_size,
                          vllm=config.vllm)
    return engine, served_layout(model_dir, engine_dtype(config.engine, device, config.vllm))


def run(args: argparse.Namespace) -> int:
    """Load the initial policy, start the engine, serve until SIGTERM / Ctrl-C."""
    config = config_from_args(args)
    store = Store()
    if config.scratch:
        Path(config.scratch).mkdir(parents=True, exist_ok=True)
    with store.local_dir(config.model, config.scratch) as model_dir:
        engine, layout = start_engine(config, model_dir)
        app = build_app(engine, config, store, layout)
        sockets = [socket.create_server((host, config.port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
                   for host in config.hosts]
        where = ", ".join(f"http://{host}:{config.port}" for host in config.hosts)
        print(f"simplear rollout-server: {engine.name} engine on {where}", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=sockets)
    return 0


class RolloutServerProcess(ChildServer):
    """A rollout server child run by `python` (e.g. .venv-vllm's), ready once /health answers."""

    def __init__(self, args: list[str], python: str | Path = sys.executable, startup_timeout_s: float = 300.0,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(["rollout-server", *args], "--port", "/health", python=python, env=env,
                         startup_timeout_s=startup_timeout_s)

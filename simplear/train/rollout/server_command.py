"""`simplear rollout-server`: serve rollouts (codes + log-probabilities) and take weight pushes over HTTP."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from simplear.config import RolloutServerConfig, VllmEngineConfig
from simplear.store import Store
from simplear.train.rollout.rollout_engine import build_rollout_engine, engine_dtype, resolved_device
from simplear.train.rollout.server import build_app
from simplear.train.rollout.weight_layout import served_layout


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


def run(args: argparse.Namespace) -> int:
    """Load the initial policy, start the engine, serve until SIGTERM / Ctrl-C."""
    config = config_from_args(args)
    store = Store()
    if config.scratch:
        Path(config.scratch).mkdir(parents=True, exist_ok=True)
    with store.local_dir(config.model, config.scratch) as model_dir:
        engine = build_rollout_engine(config, model_dir)
        app = build_app(engine, config, store, served_layout(model_dir, engine_dtype(config)))
        sockets = [socket.create_server((host, config.port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
                   for host in config.hosts]
        where = ", ".join(f"http://{host}:{config.port}" for host in config.hosts)
        print(f"simplear rollout-server: {engine.name} engine on {where}", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=sockets)
    return 0

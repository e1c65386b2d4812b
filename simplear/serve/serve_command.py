"""`simplear serve`: the KServe model server (v1, v2, OpenAI images, health, metrics) on the given addresses."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from simplear.config import PRESETS, ServeBatching, ServeConfig, ServeLimits
from simplear.sampling.engine import ENGINE_NAMES
from simplear.serve.metrics import ServeMetrics
from simplear.serve.model import SimpleARPredictor
from simplear.serve.server import serve


def _help(block: type[ServeConfig] | type[ServeBatching] | type[ServeLimits], field: str) -> str | None:
    """A config field's description as CLI help."""
    return block.model_fields[field].description


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `simplear serve`; defaults come from ServeConfig."""
    config = ServeConfig()
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-dir", default=config.model_dir,
                        help="checkpoint directory or store URI (KServe's storage initializer fills /mnt/models)")
    source.add_argument("--random-init", action="store_true", help=_help(ServeConfig, "random_init"))
    parser.add_argument("--preset", default=config.preset, choices=sorted(PRESETS), help=_help(ServeConfig, "preset"))
    parser.add_argument("--vision-checkpoint", help=_help(ServeConfig, "vision_checkpoint"))
    parser.add_argument("--codes-only", action="store_true", help=_help(ServeConfig, "codes_only"))
    parser.add_argument("--engine", default=config.engine, choices=sorted(ENGINE_NAMES))
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--model-name", default=config.model_name, help="name in the routes: /v1/models/<name>:predict")
    parser.add_argument("--host", action="append", dest="hosts", metavar="HOST",
                        help="address to bind, repeat for several (default 127.0.0.1); in a pod: its IP and 127.0.0.1")
    parser.add_argument("--http-port", type=int, default=config.http_port)
    batching, limits = config.batching, config.limits
    parser.add_argument("--max-batch", type=int, default=batching.max_batch, help=_help(ServeBatching, "max_batch"))
    parser.add_argument("--batch-window-ms", type=float, default=batching.window_ms,
                        help=_help(ServeBatching, "window_ms"))
    parser.add_argument("--queue-limit", type=int, default=batching.queue_limit,
                        help=_help(ServeBatching, "queue_limit"))
    parser.add_argument("--deadline-s", type=float, default=batching.deadline_s,
                        help=_help(ServeBatching, "deadline_s"))
    parser.add_argument("--max-images-per-request", type=int, default=limits.max_images_per_request)
    parser.add_argument("--max-prompt-chars", type=int, default=limits.max_prompt_chars)
    parser.add_argument("--max-body-bytes", type=int, default=limits.max_body_bytes,
                        help=_help(ServeLimits, "max_body_bytes"))
    parser.add_argument("--max-prompt-tokens", type=int, default=limits.max_prompt_tokens,
                        help=_help(ServeLimits, "max_prompt_tokens"))
    parser.add_argument("--resolutions", type=int, nargs="+", default=list(limits.resolutions),
                        help="pixels per side served, the first is the default (default: the checkpoint's)")


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The typed serve config of parsed arguments."""
    return ServeConfig(
        model_name=args.model_name, model_dir=args.model_dir, random_init=args.random_init, preset=args.preset,
        vision_checkpoint=args.vision_checkpoint, codes_only=args.codes_only, engine=args.engine, device=args.device,
        hosts=tuple(args.hosts or ServeConfig().hosts), http_port=args.http_port,
        batching=ServeBatching(max_batch=args.max_batch, window_ms=args.batch_window_ms,
                               queue_limit=args.queue_limit, deadline_s=args.deadline_s),
        limits=ServeLimits(max_images_per_request=args.max_images_per_request, max_body_bytes=args.max_body_bytes,
                           max_prompt_chars=args.max_prompt_chars, max_prompt_tokens=args.max_prompt_tokens,
                           resolutions=tuple(args.resolutions)),
    )


def run(args: argparse.Namespace) -> int:
    """Load the model and serve it until stopped."""
    try:
        config = config_from_args(args)
    except ValidationError as err:
        raise SystemExit(f"simplear serve: {err}") from None
    metrics = ServeMetrics()
    model = SimpleARPredictor(config, metrics)
    try:
        model.load()
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"simplear serve: {err}") from None
    serve(model, metrics, config.hosts, config.http_port, config.limits.max_body_bytes)
    return 0

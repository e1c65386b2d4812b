"""`simplear serve`: the KServe model server (v1, v2, OpenAI images, health, metrics) on the given addresses."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from simplear.config import ServeConfig
from simplear.config.flags import add_config_flags, config_flags, with_flags
from simplear.serve.metrics import ServeMetrics
from simplear.serve.model import SimpleARPredictor
from simplear.serve.server import serve

CONFIG_FLAGS = config_flags({"serve": ServeConfig}, skip={"model_dir", "random_init", "hosts"},
                            nested={"batching": set(), "limits": {"resolutions"}})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `simplear serve`: one per field of ServeConfig (its batching and limits included)."""
    config = ServeConfig()
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-dir", help="checkpoint directory or store URI (KServe's storage initializer fills "
                                            f"/mnt/models; default {config.model_dir})")
    source.add_argument("--random-init", action="store_true", default=None,
                        help=ServeConfig.model_fields["random_init"].description)
    parser.add_argument("--host", action="append", dest="hosts", metavar="HOST",
                        help="address to bind, repeat for several (default 127.0.0.1); in a pod: its IP and 127.0.0.1")
    parser.add_argument("--resolutions", type=int, nargs="+",
                        help="pixels per side served, the first is the default (default: the checkpoint's)")
    add_config_flags(parser, CONFIG_FLAGS)


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The typed serve config of parsed arguments."""
    fields: dict = {"model_dir": args.model_dir, "random_init": args.random_init,
                    "hosts": tuple(args.hosts) if args.hosts else None,
                    "limits": {"resolutions": tuple(args.resolutions)} if args.resolutions else {}}
    fields = {name: value for name, value in fields.items() if value is not None}
    return ServeConfig.model_validate(with_flags(fields, args, CONFIG_FLAGS, "serve", "simplear serve"))


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

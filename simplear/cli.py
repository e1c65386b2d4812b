"""The `simplear` command: one subcommand per job, each defined in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("simplear.demo.demo_command", "the whole lifecycle on shapes data through the KFP local runner"),
    "generate": ("simplear.generate", "generate images from prompts"),
    "shapes": ("simplear.data.shapes_command", "write the synthetic shapes dataset and its held-out prompts"),
    "tokenize": ("simplear.data.tokenize_command", "turn meta files into token shards in the store"),
    "train": ("simplear.train.train_command", "pretrain or SFT on token shards, or GRPO with rollouts"),
    "evaluate": ("simplear.eval.evaluate_command", "GenEval / DPG-Bench prompts to images in their own layout"),
    "jobs": ("simplear.platform.jobs_command", "list, describe, follow and cancel runs: local (default) or --cluster"),
    "deploy": ("simplear.platform.deploy_command", "serve a model from the store as a KServe InferenceService"),
    "manifests": ("simplear.platform.manifests_command", "write the reference Kubernetes manifests of every stage"),
    "rollout-server": ("simplear.train.rollout.server_command", "serve GRPO rollouts over HTTP (torch or vLLM engine)"),
    "serve": ("simplear.serve.serve_command", "serve a model over REST: KServe v1/v2 and OpenAI images"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; its module is imported only when used."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="simplear", description="SimpleAR platform")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(command)
    args = parser.parse_args(argv)
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

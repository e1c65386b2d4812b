"""The `simplear` command: one subcommand per job, each defined in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from simplear.child_server import die_with_parent
from simplear.store import StoreError

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("simplear.demo.demo_command", "the whole lifecycle on shapes data through the KFP local runner"),
    "generate": ("simplear.generate", "generate images from prompts"),
    "shapes": ("simplear.data.shapes.command", "write the synthetic shapes dataset and its held-out prompts"),
    "tokenize": ("simplear.data.tokenize.command", "turn meta files into token shards in the store"),
    "train": ("simplear.train.train_command", "pretrain or SFT on token shards, or GRPO with rollouts"),
    "evaluate": ("simplear.eval.evaluate_command", "GenEval / DPG-Bench prompts to images in their own layout"),
    "upload": ("simplear.upload_command", "copy a local folder into the store as a complete artifact (text LM, CLIP)"),
    "jobs": ("simplear.platform.jobs_command", "list, describe, follow and cancel runs: local (default) or --cluster"),
    "deploy": ("simplear.platform.deploy_command", "serve a model from the store as a KServe InferenceService"),
    "manifests": ("simplear.platform.manifests_command", "write the reference Kubernetes manifests of every stage"),
    "rollout-server": ("simplear.train.rollout.server", "serve GRPO rollouts over HTTP (torch or vLLM engine)"),
    "serve": ("simplear.serve.serve_command", "serve a model over REST: KServe v1/v2 and OpenAI images"),
}


DEBUG_VARIABLE = "SIMPLEAR_DEBUG"
DEBUG_HELP = f"show the full traceback of a store error (also ${DEBUG_VARIABLE}=1)"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; its module is imported only when used.

    A store error (unreachable S3, wrong credentials, missing bucket, a resume with other settings) ends the
    command with one line on stderr and exit status 1; --debug shows its traceback instead.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="simplear", description="SimpleAR platform")
    parser.add_argument("--debug", action="store_true", default=os.environ.get(DEBUG_VARIABLE) == "1",
                        help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        if name == chosen:
            importlib.import_module(module).add_arguments(command)
    args = parser.parse_args(argv)
    die_with_parent()
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except StoreError as exc:
        if args.debug:
            raise
        print(f"simplear {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

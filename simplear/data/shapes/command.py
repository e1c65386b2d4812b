"""`simplear shapes`: write a synthetic shapes dataset (images + meta.jsonl) and held-out GenEval-style prompts."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from simplear.data.shapes.dataset import META_FILENAME, make_dataset, make_eval_prompts, write_dataset
from simplear.data.shapes.prompts import TAGS
from simplear.store import Store, is_s3, join

EVAL_FILENAME = "evaluation_metadata.jsonl"


def tag_cycle(weights: str) -> tuple[str, ...]:
    """The tags training records cycle through, from `tag:weight,...` (integer weights; '' = every tag once)."""
    if not weights.strip():
        return TAGS
    cycle: list[str] = []
    for item in weights.split(","):
        tag, _, weight = item.strip().partition(":")
        if tag not in TAGS:
            raise ValueError(f"unknown tag {tag!r} in tag weights {weights!r}; known tags: {', '.join(TAGS)}")
        if not weight.isdigit():
            raise ValueError(f"tag weights {weights!r}: the weight after '{tag}:' must be a whole number")
        cycle += [tag] * int(weight)
    if not cycle:
        raise ValueError(f"tag weights {weights!r} give every tag weight 0")
    return tuple(cycle)


def write_shapes(out: str, n: int, seed: int, eval_per_tag: int, eval_seed: int, store: Store | None = None,
                 tags: Sequence[str] = TAGS) -> None:
    """`n` training records cycling through `tags` and `eval_per_tag` held-out prompts per tag under `out` (path or
    store URI); no training record is captioned with a held-out prompt (of this eval_seed and eval_per_tag)."""
    held_out = make_eval_prompts(eval_per_tag, seed=eval_seed)
    eval_lines = "".join(json.dumps(p) + "\n" for p in held_out)
    if not is_s3(out):
        write_dataset(make_dataset(n, seed=seed, tags=tags, held_out=held_out), out)
        (Path(out) / EVAL_FILENAME).write_text(eval_lines)
        return
    store = store or Store()
    with tempfile.TemporaryDirectory(prefix="simplear-shapes-") as tmp:
        write_dataset(make_dataset(n, seed=seed, tags=tags, held_out=held_out), tmp)
        for image in sorted((Path(tmp) / "images").iterdir()):
            store.upload_file(image, join(out, "images", image.name))
        store.write(join(out, EVAL_FILENAME), eval_lines.encode())
        store.upload_file(Path(tmp) / META_FILENAME, join(out, META_FILENAME))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `simplear shapes`."""
    parser.add_argument("--out", required=True, help="dataset folder (path or store URI)")
    parser.add_argument("--n", type=int, default=2000, help="training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-per-tag", type=int, default=12, help="held-out prompts per GenEval tag")
    parser.add_argument("--eval-seed", type=int, default=1)
    parser.add_argument("--tag-weights", default="",
                        help="training mix as tag:weight,... (e.g. two_object:2,position:3); default every tag once")


def run(args: argparse.Namespace) -> int:
    """Write the dataset and print where its meta file and prompts are."""
    if args.n < 1 or args.eval_per_tag < 1:
        raise SystemExit("simplear shapes: --n and --eval-per-tag must be at least 1")
    try:
        tags = tag_cycle(args.tag_weights)
    except ValueError as exc:
        raise SystemExit(f"simplear shapes: {exc}") from None
    write_shapes(args.out, args.n, args.seed, args.eval_per_tag, args.eval_seed, tags=tags)
    print(json.dumps({"meta": join(args.out, META_FILENAME), "eval_prompts": join(args.out, EVAL_FILENAME)}))
    return 0

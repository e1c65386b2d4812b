"""Seeded shapes datasets (image, short and long caption, GenEval metadata), held-out prompts, and a writer."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from simplear.data.shapes.prompts import TAGS, long_caption, prompt_metadata, prompt_space_size
from simplear.data.shapes.scene import COLORS, PlacedShape, place_shapes, render_image
from simplear.data.shapes.score import relative_position

TRAIN_STREAM = 0
EVAL_STREAM = 1
"""Seed-sequence domains: training records and held-out prompts never share a random stream."""

META_FILENAME = "meta.jsonl"


@dataclass(frozen=True, eq=False)
class ShapeRecord:
    """One synthetic example: the image, its two captions, its GenEval metadata and the objects drawn."""

    image: np.ndarray
    short_caption: str
    long_caption: str
    metadata: dict[str, Any]
    objects: tuple[PlacedShape, ...]


def _specs(metadata: dict[str, Any], rng: np.random.Generator) -> tuple[list[tuple[str, str]], list[range]]:
    """(shape, colour) of every object the include clauses ask for, and which objects belong to each clause."""
    specs: list[tuple[str, str]] = []
    groups: list[range] = []
    for req in metadata["include"]:
        start = len(specs)
        for _ in range(req["count"]):
            specs.append((req["class"], req.get("color") or COLORS[int(rng.integers(len(COLORS)))]))
        groups.append(range(start, len(specs)))
    return specs, groups


def _positions_exact(metadata: dict[str, Any], groups: list[range]) -> Callable[[tuple[PlacedShape, ...]], bool]:
    """A layout test: every positioned object stands in exactly the asked relation to every target object."""

    def accept(layout: tuple[PlacedShape, ...]) -> bool:
        for req, group in zip(metadata["include"], groups, strict=True):
            if "position" in req:
                relation, target = req["position"]
                for a in group:
                    for b in groups[target]:
                        if relative_position(layout[a].box, layout[b].box) != {relation}:
                            return False
        return True

    return accept


def render_metadata(metadata: dict[str, Any], rng: np.random.Generator) -> ShapeRecord:
    """An image that satisfies the metadata exactly (free colours drawn from rng), with its captions."""
    specs, groups = _specs(metadata, rng)
    objects = place_shapes(specs, rng, accept=_positions_exact(metadata, groups))
    return ShapeRecord(render_image(objects), metadata["prompt"], long_caption(objects), metadata, objects)


def make_dataset(n: int, seed: int, tags: Sequence[str] = TAGS,
                 held_out: Sequence[dict[str, Any]] = ()) -> list[ShapeRecord]:
    """n records cycling through `tags`, none captioned with a `held_out` prompt; record i depends only on
    (seed, i, held_out), so prefixes agree across n."""
    excluded = {prompt["prompt"] for prompt in held_out}
    allowed = {tag: [i for i in range(prompt_space_size(tag)) if prompt_metadata(tag, i)["prompt"] not in excluded]
               for tag in tags}
    records = []
    for index in range(n):
        rng = np.random.default_rng([TRAIN_STREAM, seed, index])
        tag = tags[index % len(tags)]
        metadata = prompt_metadata(tag, allowed[tag][int(rng.integers(len(allowed[tag])))])
        records.append(render_metadata(metadata, rng))
    return records


def make_eval_prompts(n_per_tag: int, seed: int, tags: Sequence[str] = TAGS) -> list[dict[str, Any]]:
    """Up to n_per_tag distinct GenEval metadata per tag, at most half of the tag's prompts (at least one), so that
    training data without them still covers every tag."""
    prompts = []
    for tag_index, tag in enumerate(tags):
        rng = np.random.default_rng([EVAL_STREAM, seed, tag_index])
        size = prompt_space_size(tag)
        for index in rng.choice(size, size=min(n_per_tag, max(1, size // 2)), replace=False):
            prompts.append(prompt_metadata(tag, int(index)))
    return prompts


def write_dataset(records: Sequence[ShapeRecord], directory: str | Path) -> Path:
    """Write images/NNNNNN.png and a meta.jsonl of {image_path, caption: {short, long}, metadata}; return its path."""
    root = Path(directory)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, record in enumerate(records):
        relative = f"images/{index:06d}.png"
        Image.fromarray(record.image).save(root / relative, format="PNG")
        entry = {
            "image_path": relative,
            "caption": {"short": record.short_caption, "long": record.long_caption},
            "metadata": record.metadata,
        }
        lines.append(json.dumps(entry) + "\n")
    meta_path = root / META_FILENAME
    meta_path.write_text("".join(lines), encoding="utf-8")
    return meta_path

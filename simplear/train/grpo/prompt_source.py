"""GRPO prompts from meta files: one caption per record (short, long, or one of the two) and its GenEval metadata."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from datasets import Dataset

from simplear.data.meta import CaptionPair, load_meta
from simplear.store import Store

CaptionChoice = Literal["short", "long", "mixed"]
METADATA_COLUMN = "metadata"
"""Dataset column holding each prompt's GenEval metadata as JSON text ("null" when its record has none)."""


@dataclass(frozen=True)
class PromptRecord:
    """A caption to generate from and the GenEval metadata that judges it (None when the record has none)."""

    caption: str
    metadata: dict[str, Any] | None


def choose_caption(caption: str | CaptionPair, choice: CaptionChoice, rng: random.Random) -> str:
    """The caption a record contributes: a plain caption as is; of a pair the short, the long, or one at random."""
    if isinstance(caption, str):
        return caption
    if choice == "mixed":
        choice = "short" if rng.random() < 0.5 else "long"
    return caption.short if choice == "short" else caption.long


def load_prompts(uri: str, choice: CaptionChoice, seed: int, store: Store) -> list[PromptRecord]:
    """Every record of a meta file or mixing YAML as a prompt; `mixed` picks per record from (seed, index)."""
    records = load_meta(uri, seed=seed, read_bytes=store.read)
    if not records:
        raise ValueError(f"{uri} holds no prompt records")
    return [
        PromptRecord(
            choose_caption(record.caption, choice, random.Random(f"simplear-grpo/{seed}/{index}")),
            record.extra.get("metadata"),
        )
        for index, record in enumerate(records)
    ]


def prompt_dataset(prompts: list[PromptRecord]) -> Dataset:
    """The trainer's dataset: a `prompt` column (the caption) and the metadata as JSON text, which Arrow keeps exact."""
    return Dataset.from_dict({
        "prompt": [p.caption for p in prompts],
        METADATA_COLUMN: [json.dumps(p.metadata) for p in prompts],
    })

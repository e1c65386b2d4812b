"""Token data for training: shard records read by memory map, examples with upstream's prompts, padded batches."""

from __future__ import annotations

import bisect
import functools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from simplear.data.tokenize.shards import FORMAT, SHARD_DIR, TokenRecord
from simplear.model.prompt import TRAIN_PREFIXES, training_prompt
from simplear.model.vocab import VisualVocab
from simplear.store import Store

IGNORE_INDEX = -100


@functools.lru_cache(maxsize=16)
def _captions(path: str) -> list[list[str]]:
    """The [short, long] captions of one shard file (parsed once per process, a few shards kept)."""
    with safe_open(path, framework="pt") as shard:
        return json.loads(shard.metadata()["captions"])


def _shard_header(path: Path) -> tuple[int, int]:
    """Number of records and codebook size of one shard file, checking its format."""
    with safe_open(str(path), framework="pt") as shard:
        metadata = shard.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a token shard (format {metadata.get('format')!r}, expected {FORMAT!r})")
        return shard.get_slice("codes").get_shape()[0], int(metadata["codebook_size"])


class TokenRecords:
    """Random access by index to every record of a token dataset's shards on local disk."""

    def __init__(self, shard_paths: list[Path]) -> None:
        if not shard_paths:
            raise ValueError("a token dataset needs at least one shard")
        headers = [_shard_header(path) for path in shard_paths]
        codebooks = {codebook for _, codebook in headers}
        if len(codebooks) != 1:
            raise ValueError(f"shards disagree on the codebook size: {sorted(codebooks)}")
        self.paths = [str(path) for path in shard_paths]
        self.codebook_size = codebooks.pop()
        self._starts = [0]
        for count, _ in headers:
            self._starts.append(self._starts[-1] + count)

    @classmethod
    def download(cls, store: Store, root: str, local_dir: Path) -> TokenRecords:
        """Copy the complete token dataset at `root` (verified against its manifest) to local_dir and open it."""
        store.get_artifact(root, local_dir)
        paths = sorted((local_dir / SHARD_DIR).glob("shard-*.safetensors"))
        if not paths:
            raise ValueError(f"token dataset {root} holds no {SHARD_DIR}/shard-*.safetensors files")
        return cls(paths)

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: int) -> TokenRecord:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} is outside [0, {len(self)})")
        shard = bisect.bisect_right(self._starts, index) - 1
        row = index - self._starts[shard]
        path = self.paths[shard]
        with safe_open(path, framework="pt") as f:
            codes = f.get_slice("codes")[row : row + 1][0].long()
            meta_index = int(f.get_slice("index")[row : row + 1][0])
        short, long = _captions(path)[row]
        return TokenRecord(index=meta_index, codes=codes, short=short, long=long)



def repeats_for(num_records: int, max_steps: int, sequences_per_step: int) -> int:
    """How many passes over the records `max_steps` optimizer steps of `sequences_per_step` need (at least 1)."""
    return max(1, math.ceil(max_steps * sequences_per_step / num_records))


class TokenDataset(Dataset):
    """`repeats` passes over the records; example i draws its prompt from a generator seeded by (seed, i)."""

    def __init__(
        self,
        records: Sequence[TokenRecord],
        tokenizer: PreTrainedTokenizerBase,
        vocab: VisualVocab,
        *,
        seed: int,
        p_drop_cond: float,
        sample_short: bool,
        max_prompt_tokens: int,
        repeats: int = 1,
        prefixes: tuple[str, ...] = TRAIN_PREFIXES,
    ) -> None:
        if repeats < 1:
            raise ValueError("repeats must be at least 1")
        self.records = records
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.seed = seed
        self.p_drop_cond = p_drop_cond
        self.sample_short = sample_short
        self.max_prompt_tokens = max_prompt_tokens
        self.repeats = repeats
        self.prefixes = prefixes

    def __len__(self) -> int:
        return self.repeats * len(self.records)

    def record(self, index: int) -> TokenRecord:
        """The record example `index` is built from."""
        return self.records[index % len(self.records)]

    def prompt(self, index: int) -> str:
        """The prompt text of example `index`: same seed and index, same prompt, in any process and after a resume."""
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} is outside [0, {len(self)})")
        rng = random.Random(f"simplear-train/{self.seed}/{index}")
        record = self.record(index)
        caption = record.short if self.sample_short and rng.random() < 0.5 else record.long
        return training_prompt(caption, rng, self.p_drop_cond, self.prefixes)

    def prompt_ids(self, index: int) -> list[int]:
        """Token ids of the prompt; one longer than max_prompt_tokens keeps its head and its last token, <|soi|>."""
        ids = self.tokenizer(self.prompt(index), add_special_tokens=False).input_ids
        if len(ids) > self.max_prompt_tokens:
            ids = ids[: self.max_prompt_tokens - 1] + ids[-1:]
        return ids

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        prompt = torch.tensor(self.prompt_ids(index), dtype=torch.long)
        codes = self.vocab.to_ids(self.record(index).codes.flatten())
        return {"input_ids": torch.cat([prompt, codes])}



@dataclass(frozen=True)
class CodeCollator:
    """Right-pads `input_ids` with `pad_id`; labels are every real token (`all`, upstream's) or the codes only.

    IGNORE_INDEX marks padding, and with `codes` the prompt too; the model shifts the labels, so the first token is
    never a target.
    """

    vocab: VisualVocab
    pad_id: int
    loss_on: Literal["all", "codes"] = "all"

    def __call__(self, examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask and labels [batch, longest example]."""
        longest = max(len(example["input_ids"]) for example in examples)
        input_ids = torch.full((len(examples), longest), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, example in enumerate(examples):
            ids = example["input_ids"]
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        target = attention_mask.bool()
        if self.loss_on == "codes":
            target &= (input_ids >= self.vocab.offset) & (input_ids < self.vocab.end)
        labels = torch.where(target, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

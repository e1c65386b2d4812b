"""Training examples: a prompt drawn as the original does (prefix, caption choice, dropout) followed by the codes."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from simplear.data.token_shards import TokenRecord
from simplear.model.prompt import training_prompt
from simplear.model.vocab import VisualVocab


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
        return training_prompt(caption, rng, self.p_drop_cond)

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

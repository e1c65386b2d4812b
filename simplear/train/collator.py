"""Batches of training examples: right padding, attention mask, and labels on every token or on the codes only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from simplear.model.vocab import VisualVocab

IGNORE_INDEX = -100


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

"""The SimpleAR vocabulary: Qwen text tokens, seven special tokens, then one id per visual code."""

from __future__ import annotations

from dataclasses import dataclass

import torch

SPECIAL_TOKENS: tuple[str, ...] = ("<|t2i|>", "<|i2t|>", "<|soi|>", "<|vtokens|>", "<|t2v|>", "<|v2t|>", "<|sov|>")
T2I, SOI, VTOKENS = "<|t2i|>", "<|soi|>", "<|vtokens|>"


@dataclass(frozen=True)
class VisualVocab:
    """Where the visual codes live in the LM vocabulary: code `c` has id `offset + c`."""

    offset: int
    codebook_size: int

    @property
    def end(self) -> int:
        """One past the last visual-code id."""
        return self.offset + self.codebook_size

    def to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids of visual codes."""
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"visual codes must lie in [0, {self.codebook_size})")
        return codes.long() + self.offset

    def to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Visual codes of token ids; ids outside the code range are an error."""
        codes = ids.long() - self.offset
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"token ids outside the visual-code range [{self.offset}, {self.end})")
        return codes

"""Requests to one left-padded batch: conditional rows, then their unconditional partners, per-request parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from simplear.config import SamplingConfig
from simplear.model.prompt import GENERATION_PREFIX, negative_prompt, t2i_prompt
from simplear.model.simplear_lm import SimpleARModel


@dataclass(frozen=True)
class SamplingModes:
    """Which optional steps some request of a batch needs: temperature, top-k/top-p, greedy rows, a penalty."""

    scaled: bool
    filtered: bool
    greedy: bool
    penalized: bool = False


@dataclass(frozen=True)
class Request:
    """One image to generate: a caption, its own sampling parameters, and the prefix its prompt puts before it."""

    prompt: str
    params: SamplingConfig = field(default_factory=SamplingConfig)
    prefix: str = GENERATION_PREFIX


@dataclass
class PromptBatch:
    """Token ids [rows, P] left-padded so every prompt ends at column P-1, with per-request parameter tensors."""

    ids: torch.Tensor
    real: torch.Tensor
    positions: torch.Tensor
    lengths: torch.Tensor
    cfg_scale: torch.Tensor
    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    repetition_penalty: torch.Tensor
    seeds: torch.Tensor
    with_uncond: bool
    modes: SamplingModes

    @property
    def size(self) -> int:
        """Number of requests."""
        return self.seeds.shape[0]

    @property
    def rows(self) -> int:
        """Number of sequences decoded: one per request, two with CFG."""
        return self.ids.shape[0]


def build_batch(
    model: SimpleARModel, requests: list[Request], device: torch.device, pad_multiple: int = 1
) -> PromptBatch:
    """Encode captions and negative prompts; CFG rows are added only if some request has a scale other than 1.

    A request without a repetition penalty takes the checkpoint's (its generation_config.json).
    """
    if not requests:
        raise ValueError("no requests to sample")
    with_uncond = any(r.params.cfg_scale != 1.0 for r in requests)
    texts = [t2i_prompt(r.prompt, r.prefix) for r in requests]
    if with_uncond:
        texts += [negative_prompt(r.params.negative_prompt) for r in requests]
    encoded = model.encode_prompts(texts)
    width = -(-max(len(e) for e in encoded) // pad_multiple) * pad_multiple
    pad_id = model.tokenizer.pad_token_id or 0
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    real = torch.zeros((len(encoded), width), dtype=torch.bool)
    for row, tokens in enumerate(encoded):
        ids[row, width - len(tokens) :] = torch.tensor(tokens)
        real[row, width - len(tokens) :] = True
    positions = (real.long().cumsum(dim=1) - 1).clamp(min=0)

    def param(name: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([getattr(r.params, name) for r in requests], dtype=dtype, device=device)

    penalties = [model.generation.repetition_penalty if r.params.repetition_penalty is None
                 else r.params.repetition_penalty for r in requests]

    return PromptBatch(
        ids=ids.to(device),
        real=real.to(device),
        positions=positions.to(device),
        lengths=real.sum(dim=1).to(device),
        cfg_scale=param("cfg_scale", torch.float32),
        temperature=param("temperature", torch.float32),
        top_k=param("top_k", torch.long),
        top_p=param("top_p", torch.float32),
        repetition_penalty=torch.tensor(penalties, dtype=torch.float32, device=device),
        seeds=param("seed", torch.long),
        with_uncond=with_uncond,
        modes=SamplingModes(
            scaled=any(r.params.temperature not in (0.0, 1.0) for r in requests),
            filtered=any(r.params.top_k > 0 or r.params.top_p < 1.0 for r in requests),
            greedy=any(r.params.temperature == 0.0 for r in requests),
            penalized=any(p != 1.0 for p in penalties),
        ),
    )

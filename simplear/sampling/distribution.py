"""One decoding step's distribution: repetition penalty, CFG, temperature / top-k / top-p, and counter-based draws."""

from __future__ import annotations

import torch

from simplear.sampling.batch import SamplingModes


def repetition_penalized(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """transformers' repetition penalty on code logits [B, codes]: seen codes' logits divided (> 0) or multiplied."""
    p = penalty.to(logits.dtype)[:, None]
    return torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)


def guided_logprobs(logits: torch.Tensor, cfg_scale: torch.Tensor, with_uncond: bool) -> torch.Tensor:
    """CFG as in the original, `u + s * (c - u)` on log-softmax, written `c + (s - 1) * (c - u)` so s = 1 is exact.

    logits: [2B, ..., codes] (conditional rows first) when `with_uncond`, else [B, ..., codes].
    """
    logp = logits.float().log_softmax(dim=-1)
    if not with_uncond:
        return logp
    cond, uncond = logp.chunk(2, dim=0)
    scale = cfg_scale.float().view(-1, *([1] * (cond.ndim - 1)))
    return cond + (scale - 1.0) * (cond - uncond)


def target_probs(
    logprobs: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, modes: SamplingModes
) -> torch.Tensor:
    """The distribution to sample from, [N, codes] (unnormalised after filtering); temperature 0 is one-hot argmax.

    Follows transformers' warpers in order: temperature, then top-k (0 keeps all), then top-p on what is left.
    `modes` says which of these any row needs, so the common case runs a single softmax.
    """
    if modes.scaled:
        logprobs = logprobs / torch.where(temperature == 0, 1.0, temperature)[:, None]
    probs = logprobs.softmax(dim=-1)
    if modes.filtered:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        ranks = torch.arange(probs.shape[-1], device=probs.device)[None, :]
        k = torch.where(top_k > 0, top_k, probs.shape[-1])[:, None]
        sorted_probs = sorted_probs * (ranks < k)
        mass_before = (sorted_probs.cumsum(dim=-1) - sorted_probs) / sorted_probs.sum(dim=-1, keepdim=True)
        drop = (mass_before >= top_p[:, None]) & (top_p[:, None] < 1.0) & (ranks > 0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs * ~drop)
    if modes.greedy:
        onehot = torch.zeros_like(probs).scatter(-1, logprobs.argmax(dim=-1, keepdim=True), 1.0)
        probs = torch.where((temperature == 0)[:, None], onehot, probs)
    return probs


def categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Draw one index per row of probs [N, codes] by inverse CDF at uniforms u [N]."""
    cdf = probs.cumsum(dim=-1)
    target = (u.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_max(probs.shape[-1] - 1)


_MASK = 0xFFFFFFFF
_MUL = 0x045D9F3B  # < 2**27: products of 32-bit values stay inside int64


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash on int64 tensors holding values in [0, 2**32)."""
    x = ((x >> 16) ^ x) * _MUL & _MASK
    x = ((x >> 16) ^ x) * _MUL & _MASK
    return (x >> 16) ^ x


def uniform(seeds: torch.Tensor, counter: torch.Tensor | int) -> torch.Tensor:
    """Uniforms in (0, 1), one per seed, a pure function of (seed, counter); broadcasts seeds against counter."""
    seeds = seeds.long()
    counter = torch.as_tensor(counter, dtype=torch.long, device=seeds.device)
    x = _mix(_mix(seeds & _MASK) ^ ((seeds >> 32) & _MASK))
    x = _mix(x ^ (counter & _MASK))
    x = _mix(x ^ ((counter >> 32) & _MASK) ^ 0x2545F491)
    return ((x >> 8).float() + 0.5) / 2.0**24

"""Counter-based random numbers: a uniform per (seed, counter), identical alone, batched or in a CUDA graph."""

from __future__ import annotations

import torch

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

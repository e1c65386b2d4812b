"""Speculative Jacobi decoding (arXiv 2410.01699) over the KV cache: verify a window of drafts per forward pass.

Each iteration feeds the last accepted token plus W draft codes. Draft j, proposed from distribution q_j, is
accepted with probability min(1, p_j / q_j); at the first rejection a code is drawn from normalised
max(p - q, 0) (or, if all W were accepted, from the next distribution). Accepted drafts keep the keys and
values this pass computed for them, so the prefix is never recomputed. The unverified tail becomes the next
drafts, resampled from this pass's distributions (Jacobi iteration); missing slots start uniform.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from simplear.model.vocab import VisualVocab
from simplear.sampling.batch import PromptBatch
from simplear.sampling.decoder import Decoder
from simplear.sampling.distribution import categorical, guided_logprobs, target_probs, uniform

_ACCEPT, _NEXT, _DRAFT = 0, 1, 2


@dataclass(frozen=True)
class SJDStats:
    """How much a run of speculative Jacobi decoding saved."""

    iterations: int
    mean_accepted_per_step: float


def jacobi_decode(
    decoder: Decoder, vocab: VisualVocab, batch: PromptBatch, num_codes: int, window: int
) -> tuple[torch.Tensor, SJDStats]:
    """Codes [requests, num_codes] distributed exactly as plain sampling with the same parameters."""
    if window < 1:
        raise ValueError("the SJD window must hold at least one draft")
    rows, width = batch.ids.shape
    pairs, codes_n, dev = batch.size, vocab.codebook_size, batch.ids.device
    per_pair = rows // pairs
    cache = decoder.new_cache(rows, width + num_codes + window + 1)
    prefix_cols = torch.arange(width - 1, device=dev).expand(rows, -1)
    decoder.forward(batch.ids[:, :-1], batch.positions[:, :-1], prefix_cols, cache, width - 1, batch.real[:, :-1])

    last = batch.ids[:, -1]
    done = torch.zeros(pairs, dtype=torch.long, device=dev)
    out = torch.zeros(pairs, num_codes + window + 1, dtype=torch.long, device=dev)
    steps = torch.zeros(pairs, dtype=torch.long, device=dev)
    slots = torch.arange(window, device=dev)
    offsets = torch.arange(window + 1, device=dev)
    q = torch.full((pairs, window, codes_n), 1.0 / codes_n, device=dev)
    drafts = (uniform(batch.seeds[:, None], _counter(0, _DRAFT, slots)) * codes_n).long().clamp_max(codes_n - 1)
    iteration = 0
    while bool((done < num_codes).any()):
        iteration += 1
        cols = ((width - 1) + done)[:, None] + offsets
        positions = ((batch.lengths - 1)[:, None] + done.repeat(per_pair)[:, None]) + offsets
        ids = torch.cat([last[:, None], (drafts + vocab.offset).repeat(per_pair, 1)], dim=1)
        logits = decoder.forward(ids, positions, cols.repeat(per_pair, 1), cache, int(cols.max()) + 1)
        p = _window_probs(logits, batch, window)

        proposed = drafts[..., None]
        ratio = p[:, :window].gather(-1, proposed).squeeze(-1) / q.gather(-1, proposed).squeeze(-1)
        accepted = uniform(batch.seeds[:, None], _counter(iteration, _ACCEPT, slots)) < ratio.clamp(max=1.0)
        k = accepted.long().cumprod(dim=-1).sum(dim=-1)

        p_next = _pick_row(p, k)
        residual = (p_next - _pick_row(q, k.clamp(max=window - 1))).clamp(min=0.0)
        use_residual = ((k < window) & (residual.sum(dim=-1) > 0))[:, None]
        draws = uniform(batch.seeds, _counter(iteration, _NEXT, 0))
        new = categorical(torch.where(use_residual, residual, p_next), draws)

        active = done < num_codes
        window_codes = torch.cat([drafts, drafts[:, :1]], dim=1).scatter(1, k[:, None], new[:, None])
        target = done[:, None] + offsets
        keep = (offsets <= k[:, None]) & active[:, None]
        out.scatter_(1, target, torch.where(keep, window_codes, out.gather(1, target)))
        steps += active.long()
        done = torch.where(active, (done + k + 1).clamp(max=num_codes), done)

        source = (slots[None] + k[:, None] + 1).clamp(max=window)
        from_p = (slots[None] + k[:, None] + 1) <= window
        q = torch.where(from_p[..., None], _pick_rows(p, source), 1.0 / codes_n)
        u = uniform(batch.seeds[:, None], _counter(iteration, _DRAFT, slots))
        drafts = categorical(q.reshape(-1, codes_n), u.reshape(-1)).view(pairs, window)
        last = (new + vocab.offset).repeat(per_pair)

    mean_accepted = float((num_codes / steps.float()).mean())
    return out[:, :num_codes], SJDStats(iterations=iteration, mean_accepted_per_step=mean_accepted)


def _window_probs(logits: torch.Tensor, batch: PromptBatch, window: int) -> torch.Tensor:
    """Normalised target distributions [pairs, window + 1, codes] at every window position."""
    logprobs = guided_logprobs(logits, batch.cfg_scale, batch.with_uncond)
    pairs, n, codes = logprobs.shape
    probs = target_probs(
        logprobs.reshape(-1, codes),
        batch.temperature.repeat_interleave(n),
        batch.top_k.repeat_interleave(n),
        batch.top_p.repeat_interleave(n),
        batch.modes,
    ).view(pairs, n, codes)
    return probs / probs.sum(dim=-1, keepdim=True)


def _pick_row(dist: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """dist[b, index[b]] for dist [pairs, n, codes]."""
    return _pick_rows(dist, index[:, None]).squeeze(1)


def _pick_rows(dist: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """dist[b, index[b, j]] for dist [pairs, n, codes] and index [pairs, m]."""
    return dist.gather(1, index[..., None].expand(-1, -1, dist.shape[-1]))


def _counter(iteration: int, stream: int, slot: torch.Tensor | int) -> torch.Tensor | int:
    """A distinct RNG counter per iteration, purpose and window slot (offset from the plain sampler's steps)."""
    return ((iteration + 1) << 40) + (stream << 20) + slot

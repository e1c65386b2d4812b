"""The Qwen2 forward pass in plain PyTorch over a preallocated KV cache, returning visual-code logits only."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import Qwen2ForCausalLM

from simplear.model.vocab import VisualVocab


class KVCache:
    """Keys and values of every layer, [rows, kv_heads, max_len, head_dim], plus which columns hold real tokens."""

    def __init__(self, layers: int, rows: int, kv_heads: int, max_len: int, head_dim: int, like: torch.Tensor) -> None:
        shape = (rows, kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.valid = torch.zeros(rows, max_len, dtype=torch.bool, device=like.device)
        self.max_len = max_len

    def write(self, layer: int, cols: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v [rows, kv_heads, S, head_dim] at columns cols [rows, S]."""
        index = cols[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        self.k[layer].scatter_(2, index, k)
        self.v[layer].scatter_(2, index, v)


class Rotary:
    """Rotary position embedding as Qwen2 applies it (rotate-half form, fp32 angles)."""

    def __init__(self, head_dim: int, theta: float, device: torch.device) -> None:
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))

    def __call__(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate x [rows, heads, S, head_dim] by positions [rows, S]."""
        freqs = positions.float()[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2's RMSNorm: normalise in fp32, scale in the input dtype."""
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class Attention:
    """Grouped-query self-attention of one layer, reading and writing the KV cache without copying it."""

    def __init__(self, hf_attn: torch.nn.Module, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        self.q, self.k, self.v, self.o = hf_attn.q_proj, hf_attn.k_proj, hf_attn.v_proj, hf_attn.o_proj
        self.heads, self.kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.scale = 1.0 / math.sqrt(head_dim)

    def __call__(
        self, x: torch.Tensor, rotary: Rotary, positions: torch.Tensor, cols: torch.Tensor,
        cache: KVCache, layer: int, mask: torch.Tensor,
    ) -> torch.Tensor:
        """x [rows, S, hidden] -> [rows, S, hidden]; mask [rows, S, kv_len] says which keys each query sees."""
        rows, s, _ = x.shape
        group = self.heads // self.kv_heads
        q = F.linear(x, self.q.weight, self.q.bias).view(rows, s, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(x, self.k.weight, self.k.bias).view(rows, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = F.linear(x, self.v.weight, self.v.bias).view(rows, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotary(q, positions), rotary(k, positions)
        cache.write(layer, cols, k, v)
        kv_len = mask.shape[-1]
        keys, values = cache.k[layer][:, :, :kv_len], cache.v[layer][:, :, :kv_len]
        q = q.reshape(rows, self.kv_heads, group * s, self.head_dim)
        scores = (q @ keys.transpose(-1, -2)).view(rows, self.kv_heads, group, s, kv_len) * self.scale
        scores = scores.float().masked_fill(~mask[:, None, None], float("-inf"))
        probs = scores.softmax(dim=-1).to(x.dtype).view(rows, self.kv_heads, group * s, kv_len)
        out = (probs @ values).view(rows, self.heads, s, self.head_dim).transpose(1, 2).reshape(rows, s, -1)
        return F.linear(out, self.o.weight)


class MLP:
    """Qwen2's gated SiLU feed-forward block."""

    def __init__(self, hf_mlp: torch.nn.Module) -> None:
        self.gate, self.up, self.down = hf_mlp.gate_proj.weight, hf_mlp.up_proj.weight, hf_mlp.down_proj.weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., hidden] -> [..., hidden]."""
        return F.linear(F.silu(F.linear(x, self.gate)) * F.linear(x, self.up), self.down)


class Block:
    """One pre-norm decoder layer: attention then MLP, each with a residual connection."""

    def __init__(self, hf_layer: torch.nn.Module, attention: Attention, eps: float) -> None:
        self.attn_norm = hf_layer.input_layernorm.weight
        self.mlp_norm = hf_layer.post_attention_layernorm.weight
        self.attention, self.mlp, self.eps = attention, MLP(hf_layer.mlp), eps

    def __call__(self, x: torch.Tensor, rotary: Rotary, positions: torch.Tensor, cols: torch.Tensor,
                 cache: KVCache, layer: int, mask: torch.Tensor) -> torch.Tensor:
        """x [rows, S, hidden] -> [rows, S, hidden]."""
        x = x + self.attention(rms_norm(x, self.attn_norm, self.eps), rotary, positions, cols, cache, layer, mask)
        return x + self.mlp(rms_norm(x, self.mlp_norm, self.eps))


class Decoder:
    """The whole LM over a static KV cache; logits are computed for the visual-code rows of the head only."""

    def __init__(self, lm: Qwen2ForCausalLM, vocab: VisualVocab) -> None:
        cfg = lm.config
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.kv_heads, self.eps = cfg.num_key_value_heads, cfg.rms_norm_eps
        self.embed = lm.model.embed_tokens.weight
        self.norm = lm.model.norm.weight
        self.code_head = lm.lm_head.weight[vocab.offset : vocab.end]
        self.rotary = Rotary(self.head_dim, _rope_theta(cfg), self.embed.device)
        self.blocks = [
            Block(layer, Attention(layer.self_attn, cfg.num_attention_heads, self.kv_heads, self.head_dim), self.eps)
            for layer in lm.model.layers
        ]

    def new_cache(self, rows: int, max_len: int) -> KVCache:
        """An empty cache for `rows` sequences of up to `max_len` tokens."""
        return KVCache(len(self.blocks), rows, self.kv_heads, max_len, self.head_dim, self.embed)

    def forward(
        self, ids: torch.Tensor, positions: torch.Tensor, cols: torch.Tensor, cache: KVCache, kv_len: int,
        real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run ids [rows, S] at rope positions and cache columns [rows, S]; return code logits [rows, S, codes].

        Keys visible to a query: real columns up to its own column, among the first `kv_len`; a query
        always sees itself, so padding rows stay finite.
        """
        cache.valid.scatter_(1, cols, torch.ones_like(cols, dtype=torch.bool) if real is None else real)
        key_cols = torch.arange(kv_len, device=ids.device)
        causal = key_cols[None, None, :] <= cols[:, :, None]
        mask = (cache.valid[:, None, :kv_len] & causal) | (key_cols[None, None, :] == cols[:, :, None])
        x = F.embedding(ids, self.embed)
        for layer, block in enumerate(self.blocks):
            x = block(x, self.rotary, positions, cols, cache, layer, mask)
        return F.linear(rms_norm(x, self.norm, self.eps), self.code_head)


def _rope_theta(config: object) -> float:
    """Rope base of a transformers config, old or new layout."""
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))

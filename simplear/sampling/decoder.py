"""The Qwen2 forward pass in plain PyTorch over a preallocated KV cache, returning visual-code logits only.

Weights are copied once into fused tensors (q|k|v, gate|up) so a decode step runs few, larger kernels;
the attention scale is folded into the query weights. Rebuild the decoder after the model's weights change.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import Qwen2ForCausalLM

from simplear.model.vocab import VisualVocab


class KVCache:
    """Keys and values of every layer, [2, rows, kv_heads, max_len, head_dim], plus which columns hold real tokens.

    Keys and values lead so that `[0, :, :, :n]` flattens (rows, kv_heads) into one batch dim without a copy.
    """

    def __init__(self, layers: int, rows: int, kv_heads: int, max_len: int, head_dim: int, like: torch.Tensor) -> None:
        shape = (2, rows, kv_heads, max_len, head_dim)
        self.kv = [torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.valid = torch.zeros(rows, max_len, dtype=torch.bool, device=like.device)
        self.max_len = max_len


class Rotary:
    """Rotary position embedding as Qwen2 applies it: x cos + rotate_half(x) sin, angles in fp32."""

    def __init__(self, head_dim: int, theta: float, device: torch.device) -> None:
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
        self.sign = torch.cat([-torch.ones(head_dim // 2), torch.ones(head_dim // 2)]).to(device)

    def angles(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin [rows, S, 1, head_dim] for positions [rows, S]."""
        freqs = positions.float()[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, :, None]
        return emb.cos().to(dtype), (emb.sin() * self.sign).to(dtype)

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
        """Rotate x [rows, S, heads, head_dim]; rotate_half(x) is roll(x, half) with the first half negated."""
        return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class Attention:
    """Grouped-query self-attention of one layer, reading and writing the KV cache without copying it."""

    def __init__(self, hf_attn: torch.nn.Module, heads: int, kv_heads: int, head_dim: int) -> None:
        scale = torch.ones(heads * head_dim + 2 * kv_heads * head_dim, device=hf_attn.q_proj.weight.device)
        scale[: heads * head_dim] = 1.0 / math.sqrt(head_dim)
        weights = torch.cat([hf_attn.q_proj.weight, hf_attn.k_proj.weight, hf_attn.v_proj.weight])
        biases = torch.cat([hf_attn.q_proj.bias, hf_attn.k_proj.bias, hf_attn.v_proj.bias])
        self.qkv_w = (weights * scale[:, None].to(weights.dtype)).detach()
        self.qkv_b = (biases * scale.to(biases.dtype)).detach()
        self.o_w = hf_attn.o_proj.weight.detach()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim

    def __call__(self, x: torch.Tensor, angles: tuple[torch.Tensor, torch.Tensor], index: torch.Tensor,
                 kv_cache: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [rows, S, hidden] -> [rows, S, hidden]; `index` places the new keys/values, `mask` [rows,1,1,S,kv_len]."""
        rows, s, _ = x.shape
        h, hkv, d = self.heads, self.kv_heads, self.head_dim
        group, kv_len = h // hkv, mask.shape[-1]
        qkv = F.linear(x, self.qkv_w, self.qkv_b).view(rows, s, h + 2 * hkv, d)
        qk = Rotary.apply(qkv[:, :, : h + hkv], *angles)
        kv = torch.cat((qk[:, :, h:], qkv[:, :, h + hkv :]), dim=2).view(rows, s, 2, hkv, d).permute(2, 0, 3, 1, 4)
        kv_cache.scatter_(3, index, kv)
        keys = kv_cache[0, :, :, :kv_len].flatten(0, 1)
        values = kv_cache[1, :, :, :kv_len].flatten(0, 1)
        q = qk[:, :, :h].transpose(1, 2).reshape(rows * hkv, group * s, d)
        scores = torch.bmm(q, keys.transpose(1, 2)).view(rows, hkv, group, s, kv_len)
        probs = scores.float().masked_fill(mask, float("-inf")).softmax(dim=-1).to(x.dtype)
        out = torch.bmm(probs.view(rows * hkv, group * s, kv_len), values)
        out = out.view(rows, h, s, d).transpose(1, 2).reshape(rows, s, h * d)
        return F.linear(out, self.o_w)


class MLP:
    """Qwen2's gated SiLU feed-forward block with gate and up fused."""

    def __init__(self, hf_mlp: torch.nn.Module) -> None:
        self.gate_up = torch.cat([hf_mlp.gate_proj.weight, hf_mlp.up_proj.weight]).detach()
        self.down = hf_mlp.down_proj.weight.detach()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., hidden] -> [..., hidden]."""
        gate, up = F.linear(x, self.gate_up).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down)


class Block:
    """One pre-norm decoder layer: attention then MLP, each with a residual connection."""

    def __init__(self, hf_layer: torch.nn.Module, attention: Attention, eps: float) -> None:
        self.attn_norm = hf_layer.input_layernorm.weight.detach()
        self.mlp_norm = hf_layer.post_attention_layernorm.weight.detach()
        self.attention, self.mlp, self.eps = attention, MLP(hf_layer.mlp), eps

    def __call__(self, x: torch.Tensor, angles: tuple[torch.Tensor, torch.Tensor], index: torch.Tensor,
                 kv_cache: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [rows, S, hidden] -> [rows, S, hidden]."""
        x = x + self.attention(rms_norm(x, self.attn_norm, self.eps), angles, index, kv_cache, mask)
        return x + self.mlp(rms_norm(x, self.mlp_norm, self.eps))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2's RMSNorm: normalise in fp32, scale in the input dtype."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    return weight * F.rms_norm(x.float(), weight.shape, None, eps).to(x.dtype)


class Decoder:
    """The whole LM over a static KV cache; logits are computed for the visual-code rows of the head only."""

    def __init__(self, lm: Qwen2ForCausalLM, vocab: VisualVocab) -> None:
        cfg = lm.config
        rope = getattr(cfg, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope type {rope.get('rope_type')!r} is not supported by the sampler")
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.kv_heads, self.eps = cfg.num_key_value_heads, cfg.rms_norm_eps
        self.embed = lm.model.embed_tokens.weight.detach()
        self.norm = lm.model.norm.weight.detach()
        self.code_head = lm.lm_head.weight.detach()[vocab.offset : vocab.end]
        theta = float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
        self.rotary = Rotary(self.head_dim, theta, self.embed.device)
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
        rows, s = ids.shape
        cache.valid.scatter_(1, cols, True if real is None else real)
        key_cols = torch.arange(kv_len, device=ids.device)
        visible = (cache.valid[:, None, :kv_len] & (key_cols <= cols[:, :, None])) | (key_cols == cols[:, :, None])
        mask = ~visible[:, None, None]
        index = cols[None, :, None, :, None].expand(2, rows, self.kv_heads, s, self.head_dim)
        angles = self.rotary.angles(positions, self.embed.dtype)
        x = F.embedding(ids, self.embed)
        for block, kv_cache in zip(self.blocks, cache.kv, strict=True):
            x = block(x, angles, index, kv_cache, mask)
        return F.linear(rms_norm(x, self.norm, self.eps), self.code_head)

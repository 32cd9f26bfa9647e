"""Probe heads on frozen encoder tokens: V-JEPA 2's attentive classifier and a linear probe on mean-pooled tokens.

The attentive pooler matches vjepa2 `src/models/attentive_pooler.py` (`AttentivePooler`, `CrossAttentionBlock`,
`AttentiveClassifier`): optional self-attention blocks over the tokens, then learnable queries that cross-attend to
them, then a linear layer. Parameter names follow it (`query_tokens`, `cross_attention_block.xattn.q/kv/proj`,
`linear`) so its probe checkpoints map over with a prefix strip.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from torch import nn

from jepa.models.vit import Block


class CrossAttention(nn.Module):
    """Multi-head attention from a few query tokens to many key/value tokens (no RoPE: queries have no position)."""

    def __init__(self, dim: int, num_heads: int = 12, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, Q, D) queries attend to (B, N, D) tokens -> (B, Q, D)."""
        B, Q, D = q.shape
        N = x.size(1)
        q = self.q(q).view(B, Q, self.num_heads, D // self.num_heads).transpose(1, 2)  # (B, h, Q, D/h)
        k, v = self.kv(x).view(B, N, 2, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)  # (B, h, N, D/h)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, Q, D/h)
        return self.proj(out.transpose(1, 2).reshape(B, Q, D))


class CrossAttentionBlock(nn.Module):
    """vjepa2's cross-attention block: `q + xattn(q, norm1(x))`, then `q + mlp(norm2(q))` (the queries are not
    normed before attending: they are free parameters)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.xattn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """Pools (B, N, D) tokens into (B, num_queries, D) with learnable queries.

    Args:
        num_queries: learnable query tokens (V-JEPA 2's classifier uses 1).
        embed_dim: token width D (the encoder's).
        num_heads: attention heads (must divide D).
        mlp_ratio: MLP hidden width / D.
        depth: 1 = one cross-attention block; each extra level adds a self-attention block over the tokens first
            (V-JEPA 2's video probes: depth 4).
        init_std: std of the truncated-normal init.
        qkv_bias: biases on the query/key/value projections.
    """

    def __init__(
        self,
        num_queries: int = 1,
        embed_dim: int = 768,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        depth: int = 1,
        init_std: float = 0.02,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"probe num_heads ({num_heads}) must divide the encoder width ({embed_dim})")
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        # vjepa2 builds the pooler with nn.LayerNorm's default eps (1e-5), not the encoder's 1e-6
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_eps=1e-5) for _ in range(depth - 1)
        )
        self.cross_attention_block = CrossAttentionBlock(embed_dim, num_heads, mlp_ratio, qkv_bias)
        trunc_normal_(self.query_tokens, std=init_std)
        self.apply(lambda m: _init_weights(m, init_std))
        self._rescale_blocks()

    def _rescale_blocks(self) -> None:
        # vjepa2 AttentivePooler._rescale_blocks: residual projections of layer i (1-based) divided by sqrt(2 i)
        with torch.no_grad():
            for layer_id, blk in enumerate(self.blocks, start=1):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))
            last = len(self.blocks) + 1
            self.cross_attention_block.xattn.proj.weight.div_(math.sqrt(2.0 * last))
            self.cross_attention_block.mlp.fc2.weight.div_(math.sqrt(2.0 * last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) tokens -> (B, num_queries, D)."""
        for blk in self.blocks:
            x = blk(x)  # no RoPE: the probe sees the encoder's features, which already encode position
        q = self.query_tokens.expand(x.size(0), -1, -1)
        return self.cross_attention_block(q, x)


class AttentiveClassifier(nn.Module):
    """V-JEPA 2's attentive probe: `AttentivePooler` with one query, then a linear classifier.

    Args:
        embed_dim: encoder width D.
        num_classes: output logits C.
        num_heads, mlp_ratio, depth, init_std, qkv_bias: see `AttentivePooler`.
    """

    def __init__(
        self,
        embed_dim: int = 768,
        num_classes: int = 1000,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        depth: int = 1,
        init_std: float = 0.02,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.pooler = AttentivePooler(1, embed_dim, num_heads, mlp_ratio, depth, init_std, qkv_bias)
        self.linear = nn.Linear(embed_dim, num_classes)
        _init_weights(self.linear, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) tokens -> (B, C) logits."""
        return self.linear(self.pooler(x).squeeze(1))


class LinearClassifier(nn.Module):
    """Linear probe: mean over tokens, a LayerNorm without affine (puts every encoder on one scale), a linear layer.

    Args:
        embed_dim: encoder width D.
        num_classes: output logits C.
        init_std: std of the truncated-normal init.
    """

    def __init__(self, embed_dim: int = 768, num_classes: int = 1000, init_std: float = 0.02) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.norm = nn.LayerNorm(embed_dim, elementwise_affine=False)
        self.linear = nn.Linear(embed_dim, num_classes)
        _init_weights(self.linear, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) tokens -> (B, C) logits."""
        return self.linear(self.norm(x.mean(dim=1)))


def _init_weights(m: nn.Module, init_std: float) -> None:
    # vjepa2 AttentivePooler._init_weights
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=init_std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)

"""3D rotary position embeddings (RoPE) for video tokens, and the attention that uses them.

V-JEPA 2 rotates each attention head's first three equal chunks of `2 * ((head_dim // 3) // 2)` channels
by the token's depth (latent frame), height and width index; the leftover channels are not rotated.

The reference (vjepa2 `src/models/utils/modules.py::rotate_queries_or_keys`) rotates adjacent channel pairs
(2k, 2k+1) but expands its sin/cos tables with `.repeat(..., 2)`, i.e. the frequency layout is *tiled*
`[f0 .. f_{c/2-1}, f0 .. f_{c/2-1}]` instead of interleaved `[f0, f0, f1, f1, ...]` (vjepa2 PR #15). The released
V-JEPA 2 weights were trained with the tiled layout, so `tiled=True` is the default; V-JEPA 2.1 uses interleaved.

V-JEPA 2.1 can also rescale spatial positions to a fixed reference grid (`interpolate_positions`), so that a model
trained at 256 px (16 x 16 tokens) sees the same position range at any resolution; temporal positions are kept.

Unlike the reference, the sin/cos tables are computed once per forward pass (`RoPE3D`) and shared by every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rope_chunk_dim(head_dim: int) -> int:
    """Channels per rotated axis: the reference's `2 * ((head_dim // 3) // 2)`."""
    return 2 * ((head_dim // 3) // 2)


def token_grid_positions(ids: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Split flat token indices of a (T', H', W') grid into (t, h, w) positions.

    Args:
        ids: (..., N) integer token indices, row-major over (T', H', W').
        grid_h, grid_w: H' and W'.

    Returns:
        (..., N, 3) float32 positions (t, h, w).
    """
    per_frame = grid_h * grid_w
    t = ids // per_frame
    rem = ids - t * per_frame
    h = rem // grid_w
    w = rem - h * grid_w
    return torch.stack((t, h, w), dim=-1).float()


def interpolate_positions(pos: torch.Tensor, grid_h: int, grid_w: int, reference_grid: int) -> torch.Tensor:
    """Rescales the spatial positions of (..., 3) (t, h, w) positions to a `reference_grid`-wide grid.

    h' = h * (reference_grid - 1) / (H' - 1) and likewise for w; t is unchanged (vjepa2 `app/vjepa_2_1/models/utils/
    modules.py::RoPEAttention.forward` with `interpolate_rope`). A single row/column stays at position 0 (the
    reference divides by zero there).
    """
    scale = pos.new_tensor([1.0, (reference_grid - 1) / max(grid_h - 1, 1), (reference_grid - 1) / max(grid_w - 1, 1)])
    return pos * scale


class RoPE3D(nn.Module):
    """Builds the cos/sin tables of 3D RoPE for given token positions.

    Args:
        head_dim: attention head width.
        base: frequency base (10000 in V-JEPA 2).
        tiled: V-JEPA 2's tiled frequency layout (True, needed by the released weights) or interleaved (False).
    """

    def __init__(self, head_dim: int, base: float = 10000.0, tiled: bool = True) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.chunk = rope_chunk_dim(head_dim)
        self.tiled = tiled
        half = self.chunk // 2
        omega = 1.0 / base ** (torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("omega", omega, persistent=False)

    def forward(self, pos: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            pos: (B, N, 3) or (N, 3) float (t, h, w) positions.
            dtype: dtype of the returned tables (computed in float32, then cast once here rather than in every
                block: pass the dtype the queries and keys will have, e.g. bfloat16 under bf16 autocast).

        Returns:
            cos, sin: (B, 1, N, head_dim) (or (1, 1, N, head_dim)) tables (float32 unless `dtype`); channels past the
            three rotated chunks have cos=1, sin=0 so that they pass through unchanged. `sin` is negated on even
            channels, so that `apply_rope` needs only a pair swap (see there).
        """
        if pos.dim() == 2:
            pos = pos.unsqueeze(0)
        B, N, _ = pos.shape
        freq = pos.float().unsqueeze(-1) * self.omega  # (B, N, 3, c/2)
        if self.tiled:
            freq = torch.cat((freq, freq), dim=-1)  # (B, N, 3, c): [f0..f_{c/2-1}, f0..f_{c/2-1}]
        else:
            freq = freq.repeat_interleave(2, dim=-1)  # (B, N, 3, c): [f0, f0, f1, f1, ...]
        freq = freq.flatten(2)  # (B, N, 3c)
        cos, sin = freq.cos(), freq.sin()
        sin[..., 0::2] *= -1
        rest = self.head_dim - 3 * self.chunk
        if rest:
            cos = F.pad(cos, (0, rest), value=1.0)
            sin = F.pad(sin, (0, rest), value=0.0)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return (cos, sin) if dtype is None else (cos.to(dtype), sin.to(dtype))


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates adjacent channel pairs (2k, 2k+1) of `x` (..., N, head_dim) by tables from `RoPE3D`.

    out[2k] = x[2k] cos - x[2k+1] sin and out[2k+1] = x[2k+1] cos + x[2k] sin (vjepa2 `rotate_queries_or_keys`),
    written as x * cos + swap_pairs(x) * signed_sin: three kernels instead of the reference's six.
    """
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return torch.addcmul(x * cos.to(x.dtype), swapped, sin.to(x.dtype))


class RoPEAttention(nn.Module):
    """Multi-head self-attention with 3D RoPE on queries and keys, through `F.scaled_dot_product_attention`.

    Parameter names (`qkv`, `proj`) match timm and vjepa2 so released weights load directly.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        attn_mask: torch.Tensor | None = None,
        kv_cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Args:
        x: (B, N, D) tokens.
        rope: (cos, sin) from `RoPE3D`, each broadcastable to (B, heads, N, head_dim); None = no rotation.
        attn_mask: optional boolean (N, N) or (B, 1, N, N) mask, True = may attend.
        kv_cache: incremental decoding: the (rotated) keys and values of earlier calls are read from and appended
            to this dict (`k`, `v`: (B, heads, M, head_dim)); the tokens of `x` attend to all of them and to each
            other (a block-causal model's new frame).
        """
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(qkv[:2], *rope).unbind(0)  # queries and keys in one pass
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        if kv_cache is not None:
            if "k" in kv_cache:
                k, v = torch.cat((kv_cache["k"], k), dim=2), torch.cat((kv_cache["v"], v), dim=2)
            kv_cache["k"], kv_cache["v"] = k, v
        drop = self.attn_drop if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        x = x.transpose(1, 2).reshape(B, N, D)
        return self.proj_drop(self.proj(x))

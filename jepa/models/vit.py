"""Video Vision Transformer encoder of V-JEPA 2 (tubelet patch embedding, 3D RoPE, SDPA attention).

Parameter names follow vjepa2 `src/models/vision_transformer.py` (and timm), so the released checkpoints load
after stripping their `module.backbone.` prefix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from jepa.models.rope import RoPE3D, RoPEAttention, token_grid_positions


class PatchEmbed3D(nn.Module):
    """(B, C, T, H, W) video -> (B, T'*H'*W', D) tokens with a Conv3d over tubelet x patch x patch cubes."""

    def __init__(self, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Block(nn.Module):
    """Pre-norm transformer block: RoPE attention + GELU MLP (names as in timm / vjepa2)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = RoPEAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_vit_weights(module: nn.Module, blocks: Sequence[Block], init_std: float) -> None:
    """vjepa2's init: truncated normal Linear/Conv weights, zero biases, unit LayerNorms, and the residual
    projections of block `i` (1-based) divided by sqrt(2 i)."""

    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv3d):
            trunc_normal_(m.weight, std=init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    module.apply(_init)
    with torch.no_grad():
        for layer_id, blk in enumerate(blocks, start=1):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))


def run_blocks(
    blocks: nn.ModuleList,
    x: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor],
    grad_checkpointing: bool,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Applies `blocks` in order, recomputing activations in backward when `grad_checkpointing` is on."""
    for blk in blocks:
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(blk, x, rope, attn_mask, use_reentrant=False)
        else:
            x = blk(x, rope, attn_mask)
    return x


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, N, D) tokens, (B, K) indices -> (B, K, D)."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class VisionTransformer(nn.Module):
    """Video ViT encoder.

    Args:
        img_size: nominal input size (H = W); RoPE works at any size divisible by `patch_size`.
        patch_size: spatial patch size.
        num_frames: nominal frames per clip (recorded for checkpoints; any multiple of `tubelet_size` works).
        tubelet_size: frames per temporal patch.
        tiled_rope: V-JEPA 2's RoPE frequency layout (True; needed by the released weights) or interleaved.
        use_activation_checkpointing: recompute block activations in backward to save memory.
    """

    def __init__(
        self,
        img_size: int = 256,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        init_std: float = 0.02,
        tiled_rope: bool = True,
        use_activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.grad_checkpointing = use_activation_checkpointing

        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        self.rope = RoPE3D(embed_dim // num_heads, tiled=tiled_rope)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth rule
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i], norm_eps)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        init_vit_weights(self, self.blocks, init_std)

    def grid_shape(self, x: torch.Tensor) -> tuple[int, int, int]:
        """Token grid (T', H', W') of a (B, C, T, H, W) input."""
        _, _, T, H, W = x.shape
        return max(T // self.tubelet_size, 1), H // self.patch_size, W // self.patch_size

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Accepts (B, C, H, W) images or (B, C, T, H, W) clips; a 1-frame input is repeated to one tubelet."""
        if x.dim() == 4:
            x = x.unsqueeze(2)
        if x.dim() != 5:
            raise ValueError(f"expected a (B, C, T, H, W) video or (B, C, H, W) image, got shape {tuple(x.shape)}")
        T, H, W = x.shape[2:]
        if T == 1 and self.tubelet_size > 1:
            x = x.expand(-1, -1, self.tubelet_size, -1, -1)
        elif T % self.tubelet_size or H % self.patch_size or W % self.patch_size:
            raise ValueError(
                f"input of {T} frames at {H}x{W} does not tile into tubelets of {self.tubelet_size} frames and "
                f"{self.patch_size}x{self.patch_size} patches; resize/crop it to a multiple"
            )
        return x

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encodes a clip.

        Args:
            x: (B, C, T, H, W) video or (B, C, H, W) image.
            keep: optional (B, K) sorted indices of the tokens to encode (the context); None = all tokens.

        Returns:
            (B, N, D) features, or (B, K, D) for the kept tokens.
        """
        x = self.prepare_input(x)
        _, gh, gw = self.grid_shape(x)
        x = self.patch_embed(x)  # (B, N, D)
        if keep is None:
            ids = torch.arange(x.size(1), device=x.device)
        else:
            ids = keep
            x = gather_tokens(x, keep)
        rope = self.rope(token_grid_positions(ids, gh, gw))
        x = run_blocks(self.blocks, x, rope, self.grad_checkpointing)
        return self.norm(x)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return set()


def _vit(embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, **kwargs: Any) -> VisionTransformer:
    return VisionTransformer(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, **kwargs)


def vit_tiny(**kwargs: Any) -> VisionTransformer:
    return _vit(192, 12, 3, **kwargs)


def vit_small(**kwargs: Any) -> VisionTransformer:
    return _vit(384, 12, 6, **kwargs)


def vit_base(**kwargs: Any) -> VisionTransformer:
    return _vit(768, 12, 12, **kwargs)


def vit_large(**kwargs: Any) -> VisionTransformer:
    return _vit(1024, 24, 16, **kwargs)


def vit_huge(**kwargs: Any) -> VisionTransformer:
    return _vit(1280, 32, 16, **kwargs)


def vit_giant(**kwargs: Any) -> VisionTransformer:
    """ViT-g as released with V-JEPA 2 (vjepa2 `vit_giant_xformers`: 22 heads of 64)."""
    return _vit(1408, 40, 22, mlp_ratio=48 / 11, **kwargs)


# (embed_dim, depth) -> (factory name, heads, mlp_ratio): used to name the size a checkpoint fits.
VIT_SIZES: dict[tuple[int, int], tuple[str, int, float]] = {
    (192, 12): ("vit_tiny", 3, 4.0),
    (384, 12): ("vit_small", 6, 4.0),
    (768, 12): ("vit_base", 12, 4.0),
    (1024, 24): ("vit_large", 16, 4.0),
    (1280, 32): ("vit_huge", 16, 4.0),
    (1408, 40): ("vit_giant", 22, 48 / 11),
}

"""Video Vision Transformer encoder of V-JEPA 2 and 2.1 (tubelet patch embedding, 3D RoPE, SDPA attention).

Parameter names follow vjepa2 `src/models/vision_transformer.py` and `app/vjepa_2_1/models/vision_transformer.py`
(and timm), so the released checkpoints load after stripping their `module.backbone.` prefix.

V-JEPA 2.1 options (all off by default, which is exactly the V-JEPA 2 encoder):
- `taps`: block indices whose outputs, each through its own LayerNorm (`norms_block.k`), form the training output
  (`forward(x, all_levels=True)`: the levels concatenated, (B, N, L*D)); the inference output (`forward(x)`) is the
  last tap's norm applied to the last block, and there is no separate `norm`.
- `img_temporal_dim_size`: a second patch embedding (`patch_embed_img`, kernel 1 x patch x patch) for inputs with that
  many frames (1: single images).
- `modality_embedding`: learned vectors `img_mod_embed` / `video_mod_embed` (1, 1, D) added to every token.
- `tiled_rope=False`: interleaved RoPE frequencies; `interpolate_rope`: spatial positions on a 16-token grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from jepa.models.rope import RoPE3D, RoPEAttention, interpolate_positions, token_grid_positions


class PatchEmbed3D(nn.Module):
    """(B, C, T, H, W) video -> (B, T'*H'*W', D) tokens: a linear map of each tubelet x patch x patch cube.

    The weights are a Conv3d's (`proj`, kernel = stride = the cube), as in vjepa2 `PatchEmbed3D`, so checkpoints are
    unchanged; the forward pass unfolds the cubes and runs one GEMM, which is faster than the strided convolution
    (36 ms of a 581 ms eager ViT-L step on an H100 went to the bf16 conv3d) and can embed only the kept cubes.
    """

    def __init__(self, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, T'*H'*W', C*t*p*p) cubes, channels in the Conv3d weight's (C, t, p, p) order."""
        B, C, T, H, W = x.shape
        t, p = self.tubelet_size, self.patch_size
        x = x.reshape(B, C, T // t, t, H // p, p, W // p, p)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, (T // t) * (H // p) * (W // p), C * t * p * p)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Embeds every cube, or with `keep` (B, K) only the kept ones: (B, N, D) or (B, K, D)."""
        cubes = self.patches(x)
        if keep is not None:
            cubes = gather_tokens(cubes, keep)
        return F.linear(cubes, self.proj.weight.flatten(1), self.proj.bias)


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
        kv_cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask, kv_cache=kv_cache))
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


def run_blocks_with_taps(
    blocks: nn.ModuleList,
    norms: nn.ModuleList,
    taps: Sequence[int],
    x: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor],
    grad_checkpointing: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Like `run_blocks`, also returning `norms[j]` applied to the output of block `taps[j]` for every tap.

    Returns:
        the last block's (B, N, D) output (not normed) and the list of (B, N, D) normed tap outputs.
    """
    levels = []
    tap_norm = dict(zip(taps, norms, strict=True))
    for i, blk in enumerate(blocks):
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(blk, x, rope, None, use_reentrant=False)
        else:
            x = blk(x, rope)
        if i in tap_norm:
            levels.append(tap_norm[i](x))
    return x, levels


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
        tiled_rope: V-JEPA 2's RoPE frequency layout (True; needed by the released V-JEPA 2 weights) or interleaved
            pairs (False; V-JEPA 2.1).
        use_activation_checkpointing: recompute block activations in backward to save memory.
        taps: V-JEPA 2.1 deep supervision: 0-based block indices, each with its own LayerNorm (`norms_block.k`);
            None = V-JEPA 2 (one final `norm`). Released: ViT-B 2/5/8/11, ViT-L 5/11/17/23, ViT-g 9/19/29/39,
            ViT-G 11/23/37/47.
        num_output_levels: how many of the last taps form the training output (None = all; 1 in the distilled
            ViT-B/L 2.1 releases, whose predictor takes one level).
        img_temporal_dim_size: frames of an input that goes through the image patch embedding `patch_embed_img`
            (kernel 1 x patch x patch); None = no image tokenizer (1-frame inputs are repeated to one tubelet).
        modality_embedding: add learned `img_mod_embed` / `video_mod_embed` (1, 1, D) vectors to every token.
        interpolate_rope: rescale spatial RoPE positions to the grid of a 256 px input (16 tokens at patch 16), as
            V-JEPA 2.1; temporal positions are not rescaled.
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
        taps: Sequence[int] | None = None,
        num_output_levels: int | None = None,
        img_temporal_dim_size: int | None = None,
        modality_embedding: bool = False,
        interpolate_rope: bool = False,
    ) -> None:
        super().__init__()
        if taps is not None:
            taps = [int(t) for t in taps]  # plain ints: the kwargs go into checkpoints
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.grad_checkpointing = use_activation_checkpointing
        self.taps = taps
        self.img_temporal_dim_size = img_temporal_dim_size
        self.interpolate_rope = interpolate_rope
        # the reference rescales to the grid of its 256 px pretraining crops (252 px at patch 14): 16 (18) tokens
        self.rope_reference_grid = 256 // patch_size

        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        if img_temporal_dim_size is not None:
            self.patch_embed_img = PatchEmbed3D(patch_size, 1, in_chans, embed_dim)
        self.rope = RoPE3D(embed_dim // num_heads, tiled=tiled_rope)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth rule
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i], norm_eps)
            for i in range(depth)
        )
        if taps is None:
            self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
            self.num_levels = 1
        else:
            self._check_taps(taps, depth, num_output_levels)
            self.norms_block = nn.ModuleList(nn.LayerNorm(embed_dim, eps=norm_eps) for _ in taps)
            self.num_levels = num_output_levels or len(taps)
        init_vit_weights(self, self.blocks, init_std)
        if modality_embedding:
            # the reference's init: N(0, 1e-6), i.e. almost zero but not exactly
            self.img_mod_embed = nn.Parameter(torch.randn(1, 1, embed_dim) * 1e-6)
            self.video_mod_embed = nn.Parameter(torch.randn(1, 1, embed_dim) * 1e-6)
        self.modality_embedding = modality_embedding

    @staticmethod
    def _check_taps(taps: Sequence[int], depth: int, num_output_levels: int | None) -> None:
        if not taps or list(taps) != sorted(set(taps)) or taps[0] < 0 or taps[-1] >= depth:
            raise ValueError(f"taps must be increasing block indices in [0, {depth - 1}], got {list(taps)}")
        if num_output_levels is not None and not 1 <= num_output_levels <= len(taps):
            raise ValueError(
                f"num_output_levels must be in [1, {len(taps)}] (the number of taps), got {num_output_levels}"
            )

    def is_image_input(self, x: torch.Tensor) -> bool:
        """True when a (B, C, T, H, W) input takes the image tokenizer (T == `img_temporal_dim_size`)."""
        return self.img_temporal_dim_size is not None and x.dim() == 5 and x.size(2) == self.img_temporal_dim_size

    def grid_shape(self, x: torch.Tensor) -> tuple[int, int, int]:
        """Token grid (T', H', W') of a (B, C, T, H, W) input."""
        _, _, T, H, W = x.shape
        if self.is_image_input(x):
            return T, H // self.patch_size, W // self.patch_size
        return max(T // self.tubelet_size, 1), H // self.patch_size, W // self.patch_size

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Accepts (B, C, H, W) images or (B, C, T, H, W) clips; a 1-frame input without an image tokenizer is
        repeated to one tubelet."""
        if x.dim() == 4:
            x = x.unsqueeze(2)
        if x.dim() != 5:
            raise ValueError(f"expected a (B, C, T, H, W) video or (B, C, H, W) image, got shape {tuple(x.shape)}")
        T, H, W = x.shape[2:]
        tubelet = 1 if self.is_image_input(x) else self.tubelet_size
        if T == 1 and tubelet > 1:
            x = x.expand(-1, -1, tubelet, -1, -1)
        elif T % tubelet or H % self.patch_size or W % self.patch_size:
            raise ValueError(
                f"input of {T} frames at {H}x{W} does not tile into tubelets of {tubelet} frames and "
                f"{self.patch_size}x{self.patch_size} patches; resize/crop it to a multiple"
            )
        return x

    def embed(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T, H, W) prepared input -> (B, N, D) patch tokens (image or video tokenizer, modality vector), or
        (B, K, D) for the `keep` (B, K) token indices only (the other cubes are never embedded)."""
        image = self.is_image_input(x)
        x = self.patch_embed_img(x, keep) if image else self.patch_embed(x, keep)
        if self.modality_embedding:
            x = x + (self.img_mod_embed if image else self.video_mod_embed).to(x.dtype)
        return x

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, all_levels: bool = False) -> torch.Tensor:
        """Encodes a clip.

        Args:
            x: (B, C, T, H, W) video or (B, C, H, W) image.
            keep: optional (B, K) sorted indices of the tokens to encode (the context); None = all tokens.
            all_levels: return the training output: the last `num_levels` normed taps concatenated. Without taps
                this is the usual output (one level), so a training loop can always ask for it.

        Returns:
            (B, N, D) features (inference output), or (B, N, num_levels * D) with `all_levels`; K instead of N for
            the kept tokens.
        """
        x = self.prepare_input(x)
        _, gh, gw = self.grid_shape(x)
        x = self.embed(x, keep)  # (B, N, D), or (B, K, D) for the kept tokens
        ids = torch.arange(x.size(1), device=x.device) if keep is None else keep
        pos = token_grid_positions(ids, gh, gw)
        if self.interpolate_rope:
            pos = interpolate_positions(pos, gh, gw, self.rope_reference_grid)
        rope = self.rope(pos, dtype=x.dtype)
        if self.taps is None:
            x = run_blocks(self.blocks, x, rope, self.grad_checkpointing)
            return self.norm(x)
        x, levels = run_blocks_with_taps(self.blocks, self.norms_block, self.taps, x, rope, self.grad_checkpointing)
        if all_levels:
            return torch.cat(levels[-self.num_levels :], dim=-1)
        return levels[-1] if self.taps[-1] == len(self.blocks) - 1 else self.norms_block[-1](x)

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
    """ViT-g as released with V-JEPA 2 and 2.1 (vjepa2 `vit_giant_xformers`: 22 heads of 64)."""
    return _vit(1408, 40, 22, mlp_ratio=48 / 11, **kwargs)


def vit_gigantic(**kwargs: Any) -> VisionTransformer:
    """ViT-G as released with V-JEPA 2.1 (vjepa2 `vit_gigantic_xformers`: 1664 wide, 48 deep, 26 heads of 64)."""
    return _vit(1664, 48, 26, mlp_ratio=64 / 13, **kwargs)


# (embed_dim, depth) -> (factory name, heads, mlp_ratio): used to name the size a checkpoint fits.
VIT_SIZES: dict[tuple[int, int], tuple[str, int, float]] = {
    (192, 12): ("vit_tiny", 3, 4.0),
    (384, 12): ("vit_small", 6, 4.0),
    (768, 12): ("vit_base", 12, 4.0),
    (1024, 24): ("vit_large", 16, 4.0),
    (1280, 32): ("vit_huge", 16, 4.0),
    (1408, 40): ("vit_giant", 22, 48 / 11),
    (1664, 48): ("vit_gigantic", 26, 64 / 13),
}

# depth -> the taps of the released V-JEPA 2.1 encoders (vjepa2 `app/vjepa_2_1/models/vision_transformer.py`)
VJEPA2_1_TAPS: dict[int, tuple[int, ...]] = {
    12: (2, 5, 8, 11),
    24: (5, 11, 17, 23),
    40: (9, 19, 29, 39),
    48: (11, 23, 37, 47),
}

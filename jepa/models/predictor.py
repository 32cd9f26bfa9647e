"""Masked predictor of V-JEPA 2 / 2.1: a narrow ViT that predicts target-token features from context tokens.

Matches vjepa2 `src/models/predictor.py::VisionTransformerPredictor` (RoPE, mask tokens, sorted context + target
tokens), without its per-sample Python loops: sorting and un-sorting are batched gathers. The V-JEPA 2.1 options
(`app/vjepa_2_1/models/predictor.py`), all off by default:
- `num_levels > 1`: the input is the encoder's concatenated levels (B, K, L*D), fused by an MLP
  (`predictor_embed`: Linear L*D -> D, GELU, Linear D -> predictor width); one level keeps the single Linear.
- `return_all_tokens`: a second head `predictor_proj_context` for the context tokens (the dense loss);
  `forward(..., return_context=True)` returns both heads.
- `out_embed_dim`: width of each output level (default `embed_dim`; the distilled ViT-B/L: the teacher's width).
- `modality_embedding`, `tiled_rope=False`, `interpolate_rope`: as in the encoder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from jepa.models.rope import RoPE3D, interpolate_positions, token_grid_positions
from jepa.models.vit import Block, gather_tokens, init_vit_weights, run_blocks


class VisionTransformerPredictor(nn.Module):
    """Predicts encoder features of target tokens.

    Args:
        img_size, patch_size, num_frames, tubelet_size: the clip geometry, which fixes the token grid that
            indices refer to (H' = W' = img_size // patch_size).
        embed_dim: encoder width (input and output).
        predictor_embed_dim, depth, num_heads: predictor width, depth and heads (V-JEPA 2: 384, 12, 12).
        num_mask_tokens: learnable mask tokens; mask family `i` uses token `i % num_mask_tokens`.
        zero_init_mask_tokens: V-JEPA 2 starts mask tokens at zero.
        num_levels: encoder levels in the input and output (V-JEPA 2.1: 4; the distilled ViT-B/L: 1).
        out_embed_dim: width of each output level; None = `embed_dim`.
        return_all_tokens: add the context-token head `predictor_proj_context` (V-JEPA 2.1's dense loss).
        modality_embedding: add learned `img_mod_embed` / `video_mod_embed` vectors to every token.
        interpolate_rope: rescale spatial RoPE positions to a 16-token grid (see `jepa.models.rope`).
    """

    def __init__(
        self,
        img_size: int = 256,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        embed_dim: int = 768,
        predictor_embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        init_std: float = 0.02,
        num_mask_tokens: int = 10,
        zero_init_mask_tokens: bool = True,
        tiled_rope: bool = True,
        use_activation_checkpointing: bool = False,
        num_levels: int = 1,
        out_embed_dim: int | None = None,
        return_all_tokens: bool = False,
        modality_embedding: bool = False,
        interpolate_rope: bool = False,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.grad_checkpointing = use_activation_checkpointing
        self.num_levels = num_levels
        self.interpolate_rope = interpolate_rope
        self.rope_reference_grid = 256 // patch_size
        out_dim = num_levels * (out_embed_dim or embed_dim)

        if num_levels == 1:
            self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        else:
            self.predictor_embed = nn.Sequential(
                nn.Linear(num_levels * embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, predictor_embed_dim)
            )
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, predictor_embed_dim)) for _ in range(num_mask_tokens)
        )
        self.rope = RoPE3D(predictor_embed_dim // num_heads, tiled=tiled_rope)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth rule
        self.predictor_blocks = nn.ModuleList(
            Block(predictor_embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i], norm_eps)
            for i in range(depth)
        )
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=norm_eps)
        self.predictor_proj = nn.Linear(predictor_embed_dim, out_dim)
        if return_all_tokens:
            self.predictor_proj_context = nn.Linear(predictor_embed_dim, out_dim)
        init_vit_weights(self, self.predictor_blocks, init_std)
        if not zero_init_mask_tokens:
            for token in self.mask_tokens:
                nn.init.trunc_normal_(token, std=init_std)
        if modality_embedding:
            self.img_mod_embed = nn.Parameter(torch.randn(1, 1, predictor_embed_dim) * 1e-6)
            self.video_mod_embed = nn.Parameter(torch.randn(1, 1, predictor_embed_dim) * 1e-6)
        self.modality_embedding = modality_embedding

    def forward(
        self,
        z_ctx: torch.Tensor,
        ctx_idx: torch.Tensor,
        tgt_idx: torch.Tensor,
        mask_index: int = 0,
        grid: tuple[int, int, int] | None = None,
        is_image: bool = False,
        return_context: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Args:
            z_ctx: (B, Kc, num_levels * D) encoder features of the context tokens (the encoder's
                `all_levels=True` output).
            ctx_idx: (B, Kc) token indices of the context (any order; disjoint from `tgt_idx`).
            tgt_idx: (B, Kt) token indices to predict.
            mask_index: which mask token to use.
            grid: token grid (T', H', W') the indices refer to; default from the constructor.
            is_image: the tokens come from an image (adds `img_mod_embed` instead of `video_mod_embed`).
            return_context: also return the context head's output (needs `return_all_tokens`).

        Returns:
            (B, Kt, num_levels * out_embed_dim) predicted target features, in the order of `tgt_idx`; with
            `return_context`, also (B, Kc, num_levels * out_embed_dim) context predictions in the order of `ctx_idx`.
        """
        _, gh, gw = grid or self.grid
        B, Kc, _ = z_ctx.shape
        x = self.predictor_embed(z_ctx)
        mask_token = self.mask_tokens[mask_index % len(self.mask_tokens)]
        x = torch.cat((x, mask_token.to(x.dtype).expand(B, tgt_idx.size(1), -1)), dim=1)
        if self.modality_embedding:
            x = x + (self.img_mod_embed if is_image else self.video_mod_embed).to(x.dtype)
        ids = torch.cat((ctx_idx, tgt_idx), dim=1)

        order = torch.argsort(ids, dim=1)  # (B, N) tokens in raster order, as in the reference
        ids = torch.gather(ids, 1, order)
        x = gather_tokens(x, order)
        pos = token_grid_positions(ids, gh, gw)
        if self.interpolate_rope:
            pos = interpolate_positions(pos, gh, gw, self.rope_reference_grid)
        x = run_blocks(self.predictor_blocks, x, self.rope(pos, dtype=x.dtype), self.grad_checkpointing)
        x = self.predictor_norm(x)

        # where each input token went in the sorted sequence
        back = torch.argsort(order, dim=1)
        z_pred = self.predictor_proj(gather_tokens(x, back[:, Kc:]))
        if not return_context:
            return z_pred
        if not hasattr(self, "predictor_proj_context"):
            raise ValueError("return_context=True needs a predictor built with return_all_tokens=True")
        return z_pred, self.predictor_proj_context(gather_tokens(x, back[:, :Kc]))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {f"mask_tokens.{i}" for i in range(len(self.mask_tokens))}

    @property
    def out_dim(self) -> int:
        """Width of the predicted features: num_levels * out_embed_dim."""
        return self.predictor_proj.out_features


def vit_predictor(**kwargs: Any) -> VisionTransformerPredictor:
    """The V-JEPA 2 predictor (384 wide, 12 deep, 12 heads, 10 mask tokens) unless overridden."""
    return VisionTransformerPredictor(**kwargs)

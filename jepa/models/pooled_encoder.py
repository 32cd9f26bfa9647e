"""A token encoder (a ViT) pooled and projected to one latent vector, for jointly trained world models.

Two uses: the project's ViT trained end to end with the world model, or a pretrained V-JEPA encoder frozen
(`freeze_backbone`) with only the pooling head trained through the predictor (`jepa.tasks.world_model` loads its
weights from `encoder_checkpoint`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class PooledEncoder(nn.Module):
    """(N, C, H, W) frames -> backbone tokens (N, K, E) -> mean over tokens, or the flattened tokens -> MLP -> (N, D).

    Args:
        backbone: a token encoder, (N, C, H, W) -> (N, K, E) (`jepa.models.vit.VisionTransformer` with
            `num_frames=1`, or any tokenizer).
        embed_dim: D.
        pool: "mean" (average the tokens; position-free) or "flatten" (keep every token's place: small token grids,
            where where-things-are is the point).
        hidden_dim: width of the head's hidden layer (0: a single linear projection).
        freeze_backbone: keep the backbone fixed (eval mode, no gradients): only the head trains.
        final_norm: LayerNorm on the output.
    """

    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int = 256,
        pool: str = "mean",
        hidden_dim: int = 0,
        freeze_backbone: bool = False,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        if pool not in ("mean", "flatten"):
            raise ValueError(f"pool must be 'mean' or 'flatten', got {pool!r}")
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.backbone, self.pool, self.freeze_backbone, self.embed_dim = backbone, pool, freeze_backbone, embed_dim
        if freeze_backbone:
            self.backbone.eval().requires_grad_(False)
        with torch.no_grad():
            size = getattr(backbone, "img_size", 64)
            tokens = backbone(torch.zeros(1, getattr(backbone, "in_chans", 3), size, size))
        width = tokens.shape[-1] if pool == "mean" else tokens[0].numel()
        layers: list[nn.Module] = [nn.Linear(width, hidden_dim), nn.GELU()] if hidden_dim else []
        layers.append(nn.Linear(hidden_dim or width, embed_dim))
        self.head = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(embed_dim) if final_norm else nn.Identity()

    def train(self, mode: bool = True) -> PooledEncoder:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # frozen: no dropout / drop-path, ever
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, D)."""
        if self.freeze_backbone:
            with torch.no_grad():
                tokens = self.backbone(x)
        else:
            tokens = self.backbone(x)
        pooled = tokens.mean(dim=1) if self.pool == "mean" else tokens.flatten(1)
        return self.norm(self.head(pooled))

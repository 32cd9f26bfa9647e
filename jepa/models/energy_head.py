"""A planning-energy head: maps a frame's frozen patch latents to a small vector whose distances track how far
apart two states are along the environment's paths, for latent MPC.

Why: a frozen ViT's patch latents encode a small agent only in the tokens it covers, so the distance between two
frames' latents stops growing once the agents are about a patch apart (Two Rooms: flat from 10 px to 80 px,
BENCHMARKS.md), and a planner has nothing to descend. The head is trained on trajectory latents with
`jepa.losses.slow_feature_loss` (eb_jepa's time-similarity plus variance-covariance regularisers, which shape its
own planning latents): consecutive frames map close, the batch spreads out. That is slow-feature analysis, whose
solution on random walks is a Laplacian eigenmap of the reachable space, so walls separate states and a door joins
them. Trained by `launch/train_energy_head.py` (`jepa.tasks.energy`); the planner scores predicted latents through it
(`jepa.planning.mpc.LatentCost`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class LatentEnergyHead(nn.Module):
    """MLP over a frame's flattened patch latents: (B, N, D) -> (B, out_dim), optionally after a convolutional stem.

    Args:
        num_tokens: N, patch tokens per frame (e.g. 64 for 64x64 frames and 8x8 patches).
        embed_dim: D, the encoder's width.
        hidden_dim: width of the hidden layers.
        out_dim: size of the planning embedding.
        depth: hidden layers (each Linear + GELU).
        conv_channels: 0 for none, else two 3x3 convolutions of this width over the square token grid first
            (weights shared across positions: the same local pattern, an agent beside a wall say, reads the same
            anywhere, which a layout-agnostic energy needs where walls move).
    """

    def __init__(
        self,
        num_tokens: int,
        embed_dim: int,
        hidden_dim: int = 512,
        out_dim: int = 32,
        depth: int = 2,
        conv_channels: int = 0,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.num_tokens, self.embed_dim = num_tokens, embed_dim
        self.grid = round(num_tokens**0.5)
        self.conv: nn.Module | None = None
        width = num_tokens * embed_dim
        if conv_channels:
            if self.grid * self.grid != num_tokens:
                raise ValueError(f"conv_channels needs a square token grid, got {num_tokens} tokens")
            self.conv = nn.Sequential(
                nn.Conv2d(embed_dim, conv_channels, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(conv_channels, conv_channels, 3, padding=1),
                nn.GELU(),
            )
            width = num_tokens * conv_channels
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_dim), nn.GELU()]
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """(..., N, D) latents -> (..., out_dim) planning embeddings."""
        N, D = latents.shape[-2:]
        if (N, D) != (self.num_tokens, self.embed_dim):
            raise ValueError(
                f"the energy head was trained on latents of {self.num_tokens} tokens x {self.embed_dim} dims, got "
                f"{N} x {D}: train it on the same encoder as the world model (model.encoder_checkpoint)"
            )
        if self.conv is None:
            return self.mlp(latents.flatten(-2))
        lead = latents.shape[:-2]
        grid = latents.reshape(-1, self.grid, self.grid, D).permute(0, 3, 1, 2)  # (B', D, g, g), row-major tokens
        return self.mlp(self.conv(grid).flatten(1)).reshape(*lead, -1)

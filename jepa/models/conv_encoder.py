"""A small convolutional encoder: one image -> one latent vector, for world models trained end to end.

eb_jepa's Two Rooms world model encodes each 65x65 frame with an Impala CNN into one 512-d vector with a final
LayerNorm; this is the same shape of model, cut to what a 2-core CPU trains in minutes: `stages` strided
convolutions (optionally followed by residual 3x3 blocks at each resolution), a flatten that keeps where things are,
one linear projection and a LayerNorm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """relu(x + conv(relu(conv(x)))), 3x3, same width (Impala's residual block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class ConvEncoder(nn.Module):
    """(N, C, H, W) frames -> (N, D) latents.

    Args:
        img_size: input side H = W (fixes the flattened width).
        in_chans: C.
        channels: output channels of each strided stage (each halves the resolution with stride 2).
        kernel_size: kernel of the strided convolutions (padding keeps `size / stride`).
        blocks_per_stage: residual 3x3 blocks after each strided convolution (0: a plain strided CNN).
        embed_dim: D.
        final_norm: LayerNorm on the output (eb_jepa's `final_ln`): latents of comparable scale, whatever the
            image, so that distances between them mean the same everywhere.
    """

    def __init__(
        self,
        img_size: int = 65,
        in_chans: int = 3,
        channels: Sequence[int] = (16, 32, 32),
        kernel_size: int = 4,
        blocks_per_stage: int = 0,
        embed_dim: int = 256,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.img_size, self.embed_dim = img_size, embed_dim
        layers: list[nn.Module] = []
        width = in_chans
        for out in channels:
            layers += [nn.Conv2d(width, out, kernel_size, stride=2, padding=(kernel_size - 1) // 2), nn.ReLU()]
            layers += [ResidualBlock(out) for _ in range(blocks_per_stage)]
            width = out
        self.stages = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.stages(torch.zeros(1, in_chans, img_size, img_size)).numel()
        self.proj = nn.Linear(flat, embed_dim)
        self.norm = nn.LayerNorm(embed_dim) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float -> (N, D)."""
        # oneDNN's CPU convolutions are faster on channels-last input (the same numbers to float rounding): the
        # Two Rooms training step runs 1.26x faster (BENCHMARKS.md, "World-model training step")
        x = x.contiguous(memory_format=torch.channels_last)
        return self.norm(self.proj(self.stages(x).flatten(1)))

"""Pixels as an environment gives them -> the encoder's input: the world model's own preprocessing.

A planner hands a world model observations exactly as the environment renders them ((..., H, W, 3) uint8 RGB);
the world model turns them into normalised frames itself, so planning code never needs to know an encoder's input
size or statistics (DESIGN.md, planning seam).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImagePreprocessor(nn.Module):
    """(..., H, W, C) uint8 images -> (N, C, S, S) float32 normalised frames, N the product of the leading dims.

    With `size`, the centered square of side min(H, W) is resized to S x S (bilinear in uint8, rounding to the nearest
    level, as `jepa.data.transforms.VideoTransform`'s eval view, so a world model sees at planning time exactly the
    frames it was trained on); `even=True` first drops an odd last row/column, as the trajectory shards do (their mp4
    needs even sizes). Without `size` the image keeps its size. Then (x / 255 - mean) / std per channel.

    Args:
        size: output side S, or None to keep H x W.
        mean: per-channel mean in [0, 1] units.
        std: per-channel standard deviation in [0, 1] units.
        even: drop the last row/column of odd-sized images.
    """

    def __init__(
        self,
        size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        even: bool = False,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        self.size, self.even = size, even
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() < 3 or images.size(-1) != len(self.mean):
            raise ValueError(
                f"expected (..., H, W, {len(self.mean)}) uint8 images, got {tuple(images.shape)} {images.dtype}"
            )
        x = images.reshape(-1, *images.shape[-3:])  # (N, H, W, C)
        if self.even:
            x = x[:, : x.size(1) // 2 * 2, : x.size(2) // 2 * 2]
        x = x.permute(0, 3, 1, 2)  # (N, C, H, W), channels-last memory
        if self.size is not None:
            height, width = x.shape[-2:]
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            x = x[..., top : top + side, left : left + side]
            if side != self.size:
                x = self._resize(x)
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=x.device).view(1, -1, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std, strict=False)], device=x.device).view(
            1, -1, 1, 1
        )
        return x.to(torch.float32).mul_(scale).add_(shift).contiguous()

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) uint8 -> (N, C, S, S) uint8, bilinear; on the CPU in uint8 as VideoTransform (dense
        channels-last input: the fast kernel), elsewhere in float rounded to the nearest level."""
        size = (self.size, self.size)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        resized = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
        return resized.round_().clamp_(0, 255).to(torch.uint8)

    def extra_repr(self) -> str:
        return f"size={self.size}, mean={self.mean}, std={self.std}, even={self.even}"

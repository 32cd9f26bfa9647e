"""Multi-block 3D masks for V-JEPA (vjepa2 `src/masks/multiseq_multiblock3d.py`).

For each mask family (a `MaskSpec`) and each clip, `num_blocks` spatio-temporal boxes are removed from the token
grid; the removed tokens are the prediction targets and the rest is the context. As in the reference the box
*size* is drawn once per batch and the box *positions* per clip.

The reference makes kept-token counts equal within a batch by truncating each sorted index list to the batch
minimum, which always discards the last tokens in raster order (last frame, bottom-right). Here a uniformly
random subset is dropped instead, so no position is favoured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskSpec:
    """One mask family. V-JEPA 2 uses two: 8 blocks at scale 0.15 (short range), 2 blocks at 0.7 (long range)."""

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)


VJEPA2_MASKS = (MaskSpec(8, (0.15, 0.15)), MaskSpec(2, (0.7, 0.7)))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + torch.rand(1, generator=generator).item() * (high - low)


def _randint(generator: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (1,), generator=generator).item())


class MaskCollator:
    """Samples context/target token indices for a batch, one (ctx, tgt) pair per mask family.

    Args:
        specs: mask families (dataclasses or plain dicts of `MaskSpec` fields).
        num_frames, crop_size, patch_size, tubelet_size: clip geometry; the grid is
            (max(num_frames // tubelet_size, 1), crop_size // patch_size, crop_size // patch_size): an image
            (num_frames 1) is one latent frame, as the image tokenizer makes it.
        fixed_counts: every batch keeps the same number of context and target tokens per family (for a grid), so
            `torch.compile` sees static shapes and compiles each family once instead of on every new count. The
            counts are the `count_quantile` quantiles of the family's context / target sizes (measured once per
            grid from 256 seeded draws); masks with fewer tokens are drawn again, larger ones lose a random subset
            (as the batch equalisation does). False = the reference's behaviour (the batch's smallest counts).
        count_quantile: see `fixed_counts`.
    """

    def __init__(
        self,
        specs: Sequence[MaskSpec | dict] = VJEPA2_MASKS,
        num_frames: int = 16,
        crop_size: int = 256,
        patch_size: int = 16,
        tubelet_size: int = 2,
        fixed_counts: bool = False,
        count_quantile: float = 0.2,
    ) -> None:
        self.specs = [s if isinstance(s, MaskSpec) else MaskSpec(**s) for s in specs]
        self.tubelet_size = tubelet_size
        self.grid = (max(num_frames // tubelet_size, 1), crop_size // patch_size, crop_size // patch_size)
        if not 0.0 <= count_quantile < 1.0:
            raise ValueError(f"count_quantile must be in [0, 1), got {count_quantile}")
        self.fixed_counts = fixed_counts
        self.count_quantile = count_quantile
        self._counts: dict[tuple[int, int, int], list[tuple[int, int]]] = {}

    def fixed_token_counts(self, grid: tuple[int, int, int] | None = None) -> list[tuple[int, int]]:
        """(context, target) token counts per family that `fixed_counts` batches have on this grid."""
        grid = grid or self.grid
        if grid not in self._counts:
            generator = torch.Generator().manual_seed(0)  # the same counts in every worker and rank
            counts = []
            for spec in self.specs:
                ctx_sizes, tgt_sizes = [], []
                for _ in range(256):
                    keep = self.sample_context(spec, self.block_size(spec, generator, grid), generator, grid)
                    if keep.any():
                        ctx_sizes.append(int(keep.sum()))
                        tgt_sizes.append(int((~keep).sum()))
                q = lambda sizes: max(int(torch.tensor(sizes, dtype=torch.float64).quantile(self.count_quantile)), 1)  # noqa: E731
                counts.append((q(ctx_sizes), q(tgt_sizes)))
            self._counts[grid] = counts
        return self._counts[grid]

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    def block_size(
        self, spec: MaskSpec, generator: torch.Generator, grid: tuple[int, int, int] | None = None
    ) -> tuple[int, int, int]:
        """(t, h, w) box size in tokens, as vjepa2 `_MaskGenerator._sample_block_size`."""
        T, H, W = grid or self.grid
        t = max(1, int(T * _uniform(generator, *spec.temporal_scale)))
        area = int(H * W * _uniform(generator, *spec.spatial_scale))
        ratio = _uniform(generator, *spec.aspect_ratio)
        h = min(int(round(math.sqrt(area * ratio))), H)
        w = min(int(round(math.sqrt(area / ratio))), W)
        return t, h, w

    def sample_context(
        self,
        spec: MaskSpec,
        size: tuple[int, int, int],
        generator: torch.Generator,
        grid: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        """(T'*H'*W',) bool: True = context, False = target (covered by one of the blocks)."""
        T, H, W = grid = grid or self.grid
        t, h, w = size
        keep = torch.ones(grid, dtype=torch.bool)
        for _ in range(spec.num_blocks):
            top = _randint(generator, H - h + 1)
            left = _randint(generator, W - w + 1)
            start = _randint(generator, T - t + 1)
            keep[start : start + t, top : top + h, left : left + w] = False
        return keep.flatten()

    def __call__(
        self, batch_size: int, generator: torch.Generator, num_frames: int | None = None
    ) -> dict[str, list[torch.Tensor]]:
        """Returns {"ctx_idx": [(B, Kc_i)], "tgt_idx": [(B, Kt_i)]}: sorted int64 indices, one entry per family.

        `num_frames` overrides the configured clip length (mixed datasets with their own frames per clip).
        """
        grid = self.grid if num_frames is None else (max(num_frames // self.tubelet_size, 1), *self.grid[1:])
        counts = self.fixed_token_counts(grid) if self.fixed_counts else [(1, 0)] * len(self.specs)
        ctx_all, tgt_all = [], []
        for spec, (min_ctx, min_tgt) in zip(self.specs, counts, strict=True):
            size = self.block_size(spec, generator, grid)
            keeps, misses = [], 0
            while len(keeps) < batch_size:
                keep = self.sample_context(spec, size, generator, grid)
                # the reference resamples an empty context; fixed counts also need enough tokens on both sides
                if int(keep.sum()) >= min_ctx and int((~keep).sum()) >= min_tgt:
                    keeps.append(keep)
                    continue
                misses += 1
                if self.fixed_counts and misses % 8 == 0:  # this block size rarely reaches the counts: redraw it
                    size = self.block_size(spec, generator, grid)
            ctx = [k.nonzero().squeeze(1) for k in keeps]
            tgt = [(~k).nonzero().squeeze(1) for k in keeps]
            fixed = self.fixed_counts
            ctx_all.append(self._equalize(ctx, generator, min_ctx if fixed else None))
            tgt_all.append(self._equalize(tgt, generator, min_tgt if fixed else None))
        return {"ctx_idx": ctx_all, "tgt_idx": tgt_all}

    @staticmethod
    def _equalize(indices: list[torch.Tensor], generator: torch.Generator, k: int | None = None) -> torch.Tensor:
        """Stacks index lists after dropping a random subset from each down to `k` (default: the shortest length)."""
        k = min(len(i) for i in indices) if k is None else k
        out = []
        for idx in indices:
            if len(idx) > k:
                idx = idx[torch.randperm(len(idx), generator=generator)[:k]].sort().values
            out.append(idx)
        return torch.stack(out)

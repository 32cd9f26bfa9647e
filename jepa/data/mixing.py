"""Several clip datasets mixed with weights, one dataset per batch (V-JEPA 2 mixes three, each with its own T).

Each batch comes whole from one dataset, so every batch is homogeneous in frames-per-clip and its masks are drawn on
that dataset's token grid. Which dataset serves batch n is decided by a low-discrepancy (golden-ratio Weyl) sequence
from a seeded random start: the order looks random, and every dataset's share of batches stays within a couple of
batches of its weight at any point of the stream, where independent draws would drift by about sqrt(n) batches.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import IterableDataset

from jepa.data.pipeline import MIXING, stream_seed

_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a mixture (``configs/data/mixture.yaml``); unset fields take the DataModule's values.

    Args:
        shards: Shard spec(s): brace patterns, globs, paths, a builder ``manifest.json``, ``pipe:``/http(s) urls;
            None = the embedded synthetic dataset (the DataModule's ``synthetic_dir``).
        weight: Relative share of batches (normalised over the mixture).
        frames_per_clip: T for this dataset's clips (images: 1 unless set).
        frame_step: Stride between sampled frames.
        fps: Sampling frame rate (overrides ``frame_step`` where the video's rate is known).
        batch_transform: Per-batch transform for this dataset, e.g. a ``MaskCollator`` for its T; None uses the
            DataModule's, called with ``num_frames=T`` when it accepts that argument.
        images: Read each sample as one image (`jepa.data.images.ImageClipDataset`): its jpg/png/webp member, or
            one random frame of its mp4; the batch is then (B, C, T, H, W) with T = ``frames_per_clip`` or 1.
        batch_size: B for this dataset's batches (V-JEPA 2.1 gives images their own batch size).
        crop_size: Output side S for this dataset (V-JEPA 2.1 trains images at another resolution than videos); its
            ``batch_transform`` must then be built for that S (a mask collator's token grid).
    """

    shards: str | list[str] | None = None
    weight: float = 1.0
    frames_per_clip: int | None = None
    frame_step: int | None = None
    fps: float | None = None
    batch_transform: Callable[..., dict[str, Any]] | None = None
    images: bool = False
    batch_size: int | None = None
    crop_size: int | None = None


def mixture_choices(weights: Sequence[float], seed: int) -> Iterator[int]:
    """Endless dataset indices, each with frequency ``weight / sum(weights)``, deterministic in ``seed``.

    Args:
        weights: Non-negative weights, at least one positive.
        seed: Seed of the sequence's random start.

    Yields:
        Indices into ``weights``.
    """
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    edges = list(itertools.accumulate(w / total for w in weights))[:-1]
    u = float(torch.rand((), generator=torch.Generator().manual_seed(seed)))
    for n in itertools.count():
        yield bisect.bisect_right(edges, (u + n * _GOLDEN) % 1.0)


class MixedBatches(IterableDataset):
    """Interleaves the batch streams of several `BatchedClips` by weight; each batch gets a ``dataset`` index.

    Args:
        sources: One batched stream per dataset (each ``set_epoch``-able, with ``batches(epoch, rank, worker)``).
        weights: Relative share of batches per source.
        seed: Seed of the choice sequence (combined with epoch, rank and worker).
    """

    def __init__(self, sources: Sequence[Any], weights: Sequence[float], seed: int = 0) -> None:
        super().__init__()
        if len(sources) != len(weights):
            raise ValueError(f"{len(sources)} datasets but {len(weights)} weights")
        self.sources = list(sources)
        self.weights = [float(w) for w in weights]
        self.seed = seed
        next(mixture_choices(self.weights, 0))  # validates the weights now, not in a worker

    def set_epoch(self, epoch: int) -> None:
        for source in self.sources:
            source.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Every source advances its pass counter, so all of them agree on this pass's epoch.
        epoch, rank, worker = [source.dataset.begin_pass() for source in self.sources][0]
        streams = [source.batches(epoch, rank, worker, name=str(i)) for i, source in enumerate(self.sources)]
        for i in mixture_choices(self.weights, stream_seed(self.seed, epoch, rank, worker, MIXING)):
            batch = next(streams[i])
            batch["dataset"] = torch.full((len(batch["key"]),), i, dtype=torch.long)
            yield batch

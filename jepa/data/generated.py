"""Training clips generated on the fly by a simulator, instead of read from shards.

An embedded environment draws a batch of clips in milliseconds (`jepa.envs.random_walk.TwoRoomsWalks`: a new wall
per clip), so nothing is stored: every batch is new. Reproducible and resumable by construction: batch k of rank r
is drawn from `numpy.random.default_rng([seed, r, k])`, whichever worker draws it, so a run resumed at step s simply
continues at batch s (no replay, no skipped data), and every rank sees its own stream. For a robot's own recorded
trajectories use the shard path (`jepa.data.trajectories`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

ClipSource = Callable[[np.random.Generator, int], dict[str, np.ndarray]]


class GeneratedClips(IterableDataset):
    """Endless batches `source(rng, batch_size)` as tensors: batch k of this rank from `default_rng([seed, rank,
    k])`, k = start, start + 1, ...; with W workers, worker w draws k = start + w, start + w + W, ... (the loader hands
    them over in that order).

    Args:
        source: `(rng, batch_size) -> {name: array}`, every array with the batch first (e.g. `frames` (B, T, H, W, 3)
            uint8, `actions` (B, T - 1, A)).
        batch_size: clips per batch.
        seed: stream seed.
        rank: this process's rank (its own stream).
        start: index of the first batch (the number of batches already trained, on a resume).
    """

    def __init__(self, source: ClipSource, batch_size: int, seed: int = 0, rank: int = 0, start: int = 0) -> None:
        self.source, self.batch_size, self.seed, self.rank, self.start = source, batch_size, seed, rank, start

    def batch(self, k: int) -> dict[str, torch.Tensor]:
        """Batch k of this rank's stream."""
        arrays = self.source(np.random.default_rng([self.seed, self.rank, k]), self.batch_size)
        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        k = self.start + worker
        while True:
            yield self.batch(k)
            k += workers


class GeneratedClipDataModule(L.LightningDataModule):
    """Batches of generated clips for `Trainer.fit` (one endless epoch; `trainer.max_steps` ends the run).

    Args:
        source: the clip generator (a `jepa.envs` walker, from its config's `_target_`).
        batch_size: clips per batch and rank.
        num_workers: generating processes (0: in the training process).
        seed: stream seed (the run's `seed`).
    """

    def __init__(self, source: ClipSource, batch_size: int = 64, num_workers: int = 1, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (the regularisers need spread over the batch), got {batch_size}"
            )
        self.source, self.batch_size, self.num_workers, self.seed = source, batch_size, num_workers, seed

    def _batches_done(self) -> int:
        """Batches this rank already trained on (restored with the step before the loader is built on a resume)."""
        if self.trainer is None:
            return 0
        return self.trainer.global_step * self.trainer.accumulate_grad_batches

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        dataset = GeneratedClips(self.source, self.batch_size, self.seed, rank, start=self._batches_done())
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=2 if self.num_workers else None,
        )

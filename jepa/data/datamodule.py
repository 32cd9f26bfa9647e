"""Lightning DataModule for video pretraining: batches built inside the workers, masks included.

Epochs and resuming: a pass over the train loader is one epoch of ``steps_per_epoch`` batches, and its data is
seeded from (seed, epoch, rank, worker). The first pass starts at epoch ``batches already trained //
steps_per_epoch`` (from ``trainer.global_step``, restored before the loader is built) and skips the batches of that
epoch already trained; every later pass takes the next epoch. So a resumed run, at an epoch boundary or mid-epoch
(preemption), sees exactly the batches of the run it continues. Skipped batches are still decoded (by the workers,
in parallel): a mid-epoch resume costs at most one epoch of data loading.

Lightning's own epoch counter is not used: when a run restarts on the last batch of an epoch, Lightning builds
(and prefetches from) the loader while ``current_epoch`` still names the finished epoch and only then moves on.

Bad data: every batch carries its worker's skip counts (``data_stats``); the DataModule removes them before the batch
reaches the model and logs ``data/skipped`` and ``data/skipped_fraction`` (totals over the run on this rank).
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, default_collate

from jepa.data.images import ImageClipDataset
from jepa.data.mixing import DatasetSpec, MixedBatches
from jepa.data.pipeline import BATCHES, DATASETS, VideoClipDataset, stream_seed
from jepa.data.synthetic import ensure_synthetic_shards
from jepa.data.transforms import VideoTransform
from jepa.data.workers import StopSignalsIgnored

log = logging.getLogger(__name__)

# f(B, generator) -> dict, or f(B, generator, num_frames=T) -> dict when the clips' T varies across datasets.
BatchTransform = Callable[..., dict[str, Any]]


def _takes_num_frames(transform: BatchTransform) -> bool:
    try:
        return "num_frames" in inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return False


class BatchedClips(IterableDataset):
    """Batches a `VideoClipDataset` inside each worker and merges ``batch_transform``'s output into every batch.

    Args:
        dataset: The clip stream.
        batch_size: B; only full batches are emitted.
        batch_transform: ``f(B, generator) -> dict`` (e.g. ``MaskCollator``), called as ``f(B, generator,
            num_frames=T)`` when it takes ``num_frames``; its generator is seeded from (seed, epoch, rank, worker) and
            advances batch after batch, so masks are reproducible too.

    Yields:
        ``{"video": (B, 3, T, S, S), "label": (B,), "direction": (B,), "key": list[str], "data_stats": {source:
        counts}, **extra}``.
    """

    def __init__(self, dataset: VideoClipDataset, batch_size: int, batch_transform: BatchTransform | None = None):
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.batch_transform = batch_transform

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.batches(*self.dataset.begin_pass())

    def batches(self, epoch: int, rank: int, worker: int, name: str = "0") -> Iterator[dict[str, Any]]:
        """The batches of one (epoch, rank, worker); ``name`` tells this dataset's skip counts apart in a mixture."""
        clips = self.dataset.stream(epoch, rank, worker)
        batches = wds.batched(self.batch_size, collation_fn=default_collate, partial=False)(clips)
        generator = torch.Generator().manual_seed(stream_seed(self.dataset.seed, epoch, rank, worker, BATCHES))
        kwargs = {"num_frames": self.dataset.frames_per_clip} if _takes_num_frames(self.batch_transform) else {}
        source = f"{name}/{epoch}/{rank}/{worker}"
        for batch in batches:
            if self.batch_transform is not None:
                batch.update(self.batch_transform(self.batch_size, generator, **kwargs))
            stats = self.dataset.stats
            batch["data_stats"] = {source: (stats.good, stats.skipped)}
            yield batch


class EpochWebLoader(wds.WebLoader):
    """``WebLoader`` that fixes each pass's epoch in the dataset before the pass starts its workers.

    A pass uses the epoch last given to `set_epoch`, else the previous pass's plus one. ``iter()`` is a generator,
    so nothing happens before the first batch is requested; Lightning's iterability check (a bare ``iter()``)
    therefore consumes no epoch.

    Args:
        dataset: Batched clip stream.
        epoch: Epoch of the first pass.
        **kwargs: ``torch.utils.data.DataLoader`` arguments (``batch_size`` is None: the dataset batches).
    """

    def __init__(self, dataset: BatchedClips | MixedBatches, epoch: int = 0, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=None, **kwargs)
        self.batch_stream = dataset
        self._requested: int | None = epoch
        self._last = epoch - 1
        self.skip = 0  # batches the next pass drops first (the already-trained part of a resumed epoch)

    # Lightning stops a DataLoader's workers when fit ends, normally or by an exception (`CombinedLoader.reset`), by
    # reaching for `loader._iterator`; this pipeline's workers belong to its inner DataLoader, so it is exposed here.
    @property
    def _iterator(self) -> Any:
        return getattr(self.pipeline[0], "_iterator", None)

    @_iterator.setter
    def _iterator(self, value: Any) -> None:
        self.pipeline[0]._iterator = value

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch``."""
        self._requested = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self._requested if self._requested is not None else self._last + 1
        self._requested, self._last = None, epoch
        self.batch_stream.set_epoch(epoch)  # workers are created below, from this state
        skip, self.skip = self.skip, 0
        yield from itertools.islice(super().__iter__(), skip, None)  # with_epoch keeps the pass to the epoch's end

    def shutdown(self) -> None:
        """Stop persistent workers now.

        Left to the garbage collector (the loader sits in reference cycles with the trainer), the worker queues are
        closed first and each worker only notices after torch's 5 s poll interval. Lightning does the same for plain
        DataLoaders (``_shutdown_workers_and_reset_iterator``), through the same private torch attributes.
        """
        iterator = self._iterator
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self._iterator = None


class VideoDataModule(L.LightningDataModule):
    """Video clips from webdataset shards (or the embedded synthetic set), batched and masked in the workers.

    Args:
        shards: Shard spec(s) (brace patterns, globs, paths, urls); None = the embedded synthetic dataset.
        synthetic_dir: Where the synthetic dataset lives (generated on first use, relative to the cwd).
        synthetic: `ensure_synthetic_shards` kwargs (num_clips, frames, size, ...).
        batch_size: Clips per batch per rank, B.
        num_workers: DataLoader workers per rank; each decodes on one thread.
        frames_per_clip: T.
        frame_step: Stride between sampled frames.
        crop_size: Output side S.
        random_resize_scale: Crop area fraction range.
        random_resize_aspect_ratio: Crop aspect ratio range.
        horizontal_flip: Random clip flips.
        steps_per_epoch: Batches per epoch on every rank (equal on all ranks; schedules use global_step).
        seed: Base seed of all data randomness.
        pin_memory: Pin batches (only when CUDA is available).
        persistent_workers: Keep workers between epochs (they then advance the epoch themselves). On by default:
            re-forking workers at every epoch boundary can deadlock a worker in CPython 3.11 when the previous
            pass's queue feeder thread is still exiting (docs/findings.md, Infrastructure).
        batch_transform: ``f(B, generator) -> dict`` run per batch in the workers, e.g. ``jepa.masks.MaskCollator``.
        datasets: A weighted mixture of datasets (`DatasetSpec`, each with its own shards, T, stride, batch size,
            crop size and batch transform, videos or images) instead of ``shards``; every batch comes from one of
            them (``configs/data/image_video.yaml`` mixes image and video batches as V-JEPA 2.1).
        fps: Sample clips at this frame rate (stride from each video's rate, as V-JEPA 2) instead of ``frame_step``.
        min_frames: Skip (and count) videos shorter than this instead of padding them.
        decoder: ``"pyav"`` or ``"torchcodec"`` (optional install).
        check_readable: Decode one clip per dataset in `setup`, so a shard list with nothing readable fails there with
            one message instead of inside a worker.
        normalize_on_device: Workers hand over uint8 clips and the batch is normalised on the training device after
            the transfer (`on_after_batch_transfer`): the float conversion was the workers' most expensive step after
            decoding, and uint8 batches are a quarter of the bytes through shared memory and to the GPU. False
            normalises in the workers (float32 batches from the loader).
    """

    def __init__(
        self,
        shards: str | list[str] | None = None,
        synthetic_dir: str = "data/synthetic_videos",
        synthetic: dict[str, Any] | None = None,
        batch_size: int = 2,
        num_workers: int = 2,
        frames_per_clip: int = 16,
        frame_step: int = 2,
        crop_size: int = 256,
        random_resize_scale: Sequence[float] = (0.3, 1.0),
        random_resize_aspect_ratio: Sequence[float] = (0.75, 1.35),
        horizontal_flip: bool = True,
        steps_per_epoch: int = 1000,
        seed: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        batch_transform: BatchTransform | None = None,
        datasets: Sequence[DatasetSpec] | None = None,
        fps: float | None = None,
        min_frames: int = 1,
        decoder: str = "pyav",
        check_readable: bool = True,
        normalize_on_device: bool = True,
    ) -> None:
        super().__init__()
        if datasets is not None and shards is not None:
            raise ValueError("give either data.shards or data.datasets (a mixture), not both; set one of them to null")
        self.shards = shards
        self.synthetic_dir = synthetic_dir
        self.synthetic = dict(synthetic or {})
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.frames_per_clip = frames_per_clip
        self.frame_step = frame_step
        self.transform = VideoTransform(
            crop_size=crop_size,
            random_resize_scale=random_resize_scale,
            random_resize_aspect_ratio=random_resize_aspect_ratio,
            horizontal_flip=horizontal_flip,
            normalize=not normalize_on_device,
        )
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.batch_transform = batch_transform
        self.datasets = list(datasets) if datasets is not None else None
        self.fps = fps
        self.min_frames = min_frames
        self.decoder = decoder
        self.check_readable = check_readable
        self.train_set: BatchedClips | MixedBatches | None = None
        self._loader: EpochWebLoader | None = None
        self._epoch = 0
        self.data_stats: dict[str, tuple[int, int]] = {}  # per (dataset, epoch, rank, worker): (good, skipped)
        self._warned_at = 0

    def _uses_synthetic(self) -> bool:
        if self.datasets is None:
            return self.shards is None
        return any(d.shards is None for d in self.datasets)

    def prepare_data(self) -> None:
        """Generate the synthetic dataset once per node (Lightning runs this on local rank 0 only)."""
        if self._uses_synthetic():
            ensure_synthetic_shards(self.synthetic_dir, **self.synthetic)

    def setup(self, stage: str | None = None) -> None:
        """Resolve the shards (raises FileNotFoundError naming missing paths) and build the clip stream(s)."""
        if self.train_set is not None:
            return
        synthetic = ensure_synthetic_shards(self.synthetic_dir, **self.synthetic) if self._uses_synthetic() else None
        if self.datasets is None:
            self.train_set = self._batched(DatasetSpec(self.shards), self.seed, synthetic)
        else:
            sources = [
                self._batched(d, stream_seed(self.seed, 0, 0, i, DATASETS), synthetic)
                for i, d in enumerate(self.datasets)
            ]
            self.train_set = MixedBatches(sources, [d.weight for d in self.datasets], seed=self.seed)

    def _batched(self, spec: DatasetSpec, seed: int, synthetic: list[str] | None) -> BatchedClips:
        shards = synthetic if spec.shards is None else spec.shards
        transform = self.transform
        if spec.crop_size is not None and spec.crop_size != transform.crop_size:
            if spec.batch_transform is None and self.batch_transform is not None:
                raise ValueError(
                    f"a dataset with crop_size={spec.crop_size} would get the batch transform (masks) built for "
                    f"crop_size={transform.crop_size}: give that entry of data.datasets its own batch_transform for "
                    "its crop size, as configs/data/image_video.yaml does for images"
                )
            transform = VideoTransform(
                crop_size=spec.crop_size,
                random_resize_scale=transform.random_resize_scale,
                random_resize_aspect_ratio=transform.random_resize_aspect_ratio,
                horizontal_flip=transform.horizontal_flip,
                normalize=transform.normalize_output,
            )
        common = {"transform": transform, "seed": seed, "decoder": self.decoder}
        if spec.images:
            clips = ImageClipDataset(shards, frames_per_clip=spec.frames_per_clip or 1, **common)
        else:
            clips = VideoClipDataset(
                shards,
                frames_per_clip=spec.frames_per_clip or self.frames_per_clip,
                frame_step=spec.frame_step or self.frame_step,
                fps=spec.fps or self.fps,
                min_frames=self.min_frames,
                **common,
            )
        if self.check_readable:
            clips.check_readable()
        batch_transform = spec.batch_transform if spec.batch_transform is not None else self.batch_transform
        return BatchedClips(clips, spec.batch_size or self.batch_size, batch_transform)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Take the workers' skip counts out of the batch and log them (``data/skipped``, ``data/skipped_fraction``)."""
        if isinstance(batch, dict) and "data_stats" in batch:
            self.data_stats.update(batch.pop("data_stats"))
            self._report_data_stats()
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise uint8 clips on the device they were moved to (see ``normalize_on_device``)."""
        if (
            isinstance(batch, dict)
            and isinstance(batch.get("video"), torch.Tensor)
            and batch["video"].dtype == torch.uint8
        ):
            batch["video"] = self.transform.normalize(batch["video"])
        return batch

    def _report_data_stats(self) -> None:
        good = sum(g for g, _ in self.data_stats.values())
        skipped = sum(s for _, s in self.data_stats.values())
        if skipped >= 2 * max(self._warned_at, 8):
            log.warning("skipped %d of %d samples read so far (corrupt, undecodable, truncated or too short)",
                        skipped, good + skipped)  # fmt: skip
            self._warned_at = skipped
        trainer = self.trainer
        if trainer is None or not trainer.loggers or trainer.global_step % max(trainer.log_every_n_steps, 1):
            return
        metrics = {"data/skipped": float(skipped), "data/skipped_fraction": skipped / max(good + skipped, 1)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass over the train loader use ``epoch`` (Lightning does this through the loader)."""
        self._epoch = epoch
        if self._loader is not None:
            self._loader.set_epoch(epoch)

    def teardown(self, stage: str | None = None) -> None:
        """Stop persistent workers at the end of fit (Lightning calls this)."""
        if self._loader is not None:
            self._loader.shutdown()

    def train_dataloader(self) -> EpochWebLoader:
        """Endless batches cut into epochs of ``steps_per_epoch`` (Lightning then sees an unsized loader)."""
        if self.train_set is None:
            self.setup("fit")
        skip = 0
        if self.trainer is not None:
            batches_done = self.trainer.global_step * self.trainer.accumulate_grad_batches
            self._epoch, skip = divmod(batches_done, self.steps_per_epoch)
        self._loader = EpochWebLoader(
            self.train_set,
            epoch=self._epoch,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            worker_init_fn=StopSignalsIgnored(),  # a group SIGTERM/Ctrl-C is the trainer's to handle (PITFALLS 13)
        ).with_epoch(self.steps_per_epoch)
        self._loader.skip = skip
        return self._loader

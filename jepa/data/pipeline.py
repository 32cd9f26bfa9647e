"""Streaming video clips from webdataset shards: resampled shards, shuffle, decode, transform (no Lightning).

Every random choice (shards, shuffle, clip start, crop, flip) comes from generators seeded by
``(seed, epoch, rank, worker_id)``, so two runs with the same seed and worker count see identical samples, and each
epoch sees new ones (PITFALLS 12: the epoch is folded into the seed, since non-persistent workers start from a fresh
copy of the dataset every epoch).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from jepa.data.decode import clip_decoder
from jepa.data.shards import resolve_shards
from jepa.data.transforms import VideoTransform

log = logging.getLogger(__name__)


def rank_and_world_size() -> tuple[int, int]:
    """Global (rank, world_size): torch.distributed if initialised, else env ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def stream_seed(seed: int, epoch: int, rank: int, worker: int, stream: int) -> int:
    """A 63-bit seed for one random stream of one (epoch, rank, worker); independent across all five inputs."""
    entropy = [seed % 2**64, epoch % 2**64, rank, worker, stream]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


# Stream ids, so shard order, shuffle, per-sample randomness, masks and dataset mixing never share a generator.
SHARDS, SHUFFLE, SAMPLES, BATCHES, MIXING, DATASETS = range(6)


class NoReadableSamplesError(RuntimeError):
    """The shards gave nothing usable: every tar or video failed (or was empty)."""


class SkipStats:
    """Counts what one worker skipped and why; warns for the first few skips, raises if nothing is readable.

    Args:
        num_shards: Shards in the list (a dead stream is declared after trying min(num_shards, 8) distinct ones).
        max_warnings: Skips logged individually before going quiet.
        max_consecutive_failures: Failures in a row that stop the stream even after good samples (e.g. shards
            deleted or unreachable mid-run); skips interleaved with good samples never stop it.
    """

    def __init__(self, num_shards: int, max_warnings: int = 5, max_consecutive_failures: int = 10_000) -> None:
        self.good = 0
        self.skipped = 0
        self.reasons: Counter[str] = Counter()
        self.consecutive = 0
        self.shards_tried: set[str] = set()
        self._shards_needed = min(num_shards, 8)
        self._max_warnings = max_warnings
        self._max_consecutive = max_consecutive_failures

    def ok(self) -> None:
        self.good += 1
        self.consecutive = 0

    def skip(self, reason: str, where: str) -> None:
        self.skipped += 1
        self.consecutive += 1
        self.reasons[reason.split(":")[0]] += 1
        if self.skipped <= self._max_warnings:
            more = " (further skips are counted silently)" if self.skipped == self._max_warnings else ""
            log.warning("skipping %s: %s%s", where, reason, more)
        dead = self.good == 0 and self.consecutive >= 16 and len(self.shards_tried) >= self._shards_needed
        if dead or self.consecutive >= self._max_consecutive:
            raise NoReadableSamplesError(
                f"no readable video samples: {self.consecutive} failures in a row after {self.good} good samples "
                f"({dict(self.reasons)}), from {len(self.shards_tried)} shard(s) tried, e.g. "
                f"{sorted(self.shards_tried)[:3]}; check that the shards are webdataset tars with .mp4 members "
                "(build them with `python data/make_shards.py VIDEO_DIR --out DIR`)"
            )

    def tar_error(self, exn: Exception) -> bool:
        """webdataset ``handler=``: count the broken tar/member and keep going."""
        # webdataset appends (stream, url) to the exception's args; report the url, not the stream object.
        args = exn.args or ("",)
        where = next((a for a in reversed(args) if isinstance(a, str) and a is not args[0]), "tar data")
        reason = args[0] if isinstance(args[0], str) else getattr(exn, "strerror", None) or args[0]
        self.skip(f"{type(exn).__name__}: {reason}", where)
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"good": self.good, "skipped": self.skipped, "reasons": dict(self.reasons)}


class VideoClipDataset(IterableDataset):
    """Endless stream of transformed random clips from webdataset shards (one pass = one epoch slice of it).

    Shards are resampled with replacement per (rank, worker), so there is no node splitter to raise on
    world_size > 1 and every rank gets an endless stream; equal epoch lengths come from the loader (``with_epoch``).
    Broken tars, undecodable videos and samples without ``mp4`` are skipped, counted in `stats` and logged a few
    times; a stream that never yields a sample raises `NoReadableSamplesError` instead of hanging.

    Args:
        shards: Shard spec(s) for `resolve_shards` (brace patterns, globs, paths, ``pipe:``/http urls).
        frames_per_clip: T.
        frame_step: Stride between sampled frames.
        transform: Clip transform; default ``VideoTransform()`` (training mode, 256 px).
        seed: Base seed of every random choice.
        shuffle_buffer: Samples (still encoded) held for shuffling; 0 or 1 disables shuffling.
        fps: Sample clips at this frame rate (stride from each video's own rate, as V-JEPA 2); None uses
            ``frame_step``.
        min_frames: Videos with fewer frames are skipped (and counted) instead of padded; 1 keeps images.
        decoder: ``"pyav"`` (default) or ``"torchcodec"`` (optional install, see `jepa.data.decode`).

    Yields:
        ``{"video": (3, T, S, S), "label": int, "direction": int, "key": str}``; the video as the transform returns
        it (float32, or uint8 with ``normalize=False``); ``label`` and ``direction`` are -1 when the json lacks them.
    """

    def __init__(
        self,
        shards: str | list[str],
        frames_per_clip: int = 16,
        frame_step: int = 2,
        transform: VideoTransform | None = None,
        seed: int = 0,
        shuffle_buffer: int = 256,
        fps: float | None = None,
        min_frames: int = 1,
        decoder: str = "pyav",
    ) -> None:
        super().__init__()
        self.shards = resolve_shards(shards)
        self.fps = fps
        self.min_frames = min_frames
        self.decoder = decoder
        self._decode_clip = clip_decoder(decoder)
        self.frames_per_clip = frames_per_clip
        self.frame_step = frame_step
        self.transform = transform if transform is not None else VideoTransform()
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.epoch = 0
        self.stats: SkipStats | None = None  # of the latest pass in this process
        self._passes = 0  # passes over this copy since set_epoch
        self._rank: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch``; call it in the main process before the loader's workers start.

        Also records the rank here, where torch.distributed is initialised (spawned workers are not, and would all
        see rank 0, PITFALLS 12).
        """
        self.epoch = epoch
        self._passes = 0
        self._rank = rank_and_world_size()[0]

    def begin_pass(self) -> tuple[int, int, int]:
        """Start a pass in this process: its (epoch, rank, worker_id).

        The epoch is the one given to `set_epoch`, plus the passes this copy of the dataset already made since then:
        a fresh worker copy gets exactly that epoch, a persistent worker (or the main process, without workers)
        moves on to the next epoch by itself.
        """
        epoch = self.epoch + self._passes
        self._passes += 1
        info = get_worker_info()
        rank = self._rank if info is not None and self._rank is not None else rank_and_world_size()[0]
        return epoch, rank, (info.id if info is not None else 0)

    def _raw_samples(self, rng_seed: int, stats: SkipStats) -> Iterator[dict[str, Any]]:
        """Endless raw tar samples from resampled shards; shards that yield nothing count as failures."""
        # A fresh ResampledShards per pass: its own epoch counter starts at 0, so our seed alone decides the order.
        urls = wds.ResampledShards(self.shards, seed=rng_seed, worker_seed=lambda: 0, deterministic=True)
        for shard in urls:
            stats.shards_tried.add(shard["url"])
            count = 0
            try:
                for sample in wds.tarfile_samples([shard], handler=stats.tar_error):
                    count += 1
                    yield sample
            finally:
                # webdataset's opener stores the file in our dict and never closes it; an abandoned pass (end of
                # epoch) would otherwise leak it until garbage collection.
                if shard.get("stream") is not None:
                    shard["stream"].close()
            if count == 0:
                stats.skip("no samples in shard", shard["url"])

    def _decode(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        key = sample.get("__key__", "?")
        if "mp4" not in sample:
            raise ValueError(f"missing mp4: sample has {sorted(k for k in sample if not k.startswith('__'))}")
        meta = json.loads(sample["json"]) if "json" in sample else {}
        frames = self._decode_clip(
            sample["mp4"], self.frames_per_clip, self.frame_step, generator, fps=self.fps, min_frames=self.min_frames
        )  # (T, H, W, 3)
        video = self.transform(frames, generator)  # (3, T, S, S)
        label, direction = meta.get("label"), meta.get("direction")
        return {
            "video": video,
            "label": -1 if label is None else int(label),
            "direction": -1 if direction is None else int(direction),
            "key": key,
        }

    def _decoded(
        self, samples: Iterator[dict[str, Any]], generator: torch.Generator, stats: SkipStats
    ) -> Iterator[dict[str, Any]]:
        for sample in samples:
            try:
                out = self._decode(sample, generator)
            except Exception as exn:  # noqa: BLE001 - bad data must never stop a run; it is counted and logged
                where = f"sample {sample.get('__key__')} of {sample.get('__url__')}"
                stats.skip(f"{type(exn).__name__}: {exn}", where)
                continue
            stats.ok()
            yield out

    def check_readable(self) -> None:
        """Decode one clip in this process, so a shard list with nothing readable fails before training starts.

        Raises:
            NoReadableSamplesError: If no sample decodes (after trying several shards); the message names them.
        """
        stats = SkipStats(len(self.shards), max_warnings=0)
        generator = torch.Generator().manual_seed(self.seed)
        samples = self._raw_samples(stream_seed(self.seed, 0, 0, 0, SHARDS), stats)
        try:
            next(self._decoded(samples, generator, stats))
        finally:
            samples.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.stream(*self.begin_pass())

    def stream(self, epoch: int, rank: int, worker: int) -> Iterator[dict[str, Any]]:
        """The endless sample stream of one (epoch, rank, worker); see the class docstring for the samples."""
        seeds = [stream_seed(self.seed, epoch, rank, worker, s) for s in (SHARDS, SHUFFLE, SAMPLES)]
        stats = self.stats = SkipStats(len(self.shards))
        samples = self._raw_samples(seeds[0], stats)
        if self.shuffle_buffer > 1:
            # Shuffle the small encoded samples, decode only what is emitted.
            rng = random.Random(seeds[1])
            samples = wds.shuffle(self.shuffle_buffer, min(64, self.shuffle_buffer), rng=rng)(samples)
        generator = torch.Generator().manual_seed(seeds[2])
        yield from self._decoded(samples, generator, stats)

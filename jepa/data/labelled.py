"""Labelled clips for probes: a finite, deterministic pass over webdataset shards, with multi-clip / multi-view eval.

Unlike the pretraining stream (`jepa.data.pipeline`), shards are read in order and never resampled, so one pass
sees every labelled sample exactly once, split across (rank, worker) by sample index: evaluation counts each
held-out clip once. Training repeats the pass endlessly with a new shuffle each time, and its epochs are cut into
equal numbers of batches by the trainer's step budget.

- Training view: one random clip (`decode_clip`) and one random resized crop (`VideoTransform(training=True)`).
- Eval views: `num_clips` clips spread evenly over the video times `num_views` square crops spread along its longer
  side (V-JEPA 2's multi-clip / multi-view protocol); the probe averages its predictions over them.
"""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Iterator, Sequence
from typing import Any

import av
import lightning as L
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from jepa.data.decode import decode_clip, decode_clip_frames
from jepa.data.pipeline import (
    SAMPLES,
    SHARDS,
    SHUFFLE,
    NoReadableSamplesError,
    SkipStats,
    rank_and_world_size,
    stream_seed,
)
from jepa.data.shards import resolve_shards
from jepa.data.synthetic import ensure_synthetic_shards
from jepa.data.transforms import VideoTransform
from jepa.data.workers import StopSignalsIgnored

log = logging.getLogger(__name__)


def count_frames(mp4: bytes) -> int:
    """Frames in a video, counted from its demuxed packets (headers can say 0 or be off by one, PITFALLS 11)."""
    with av.open(io.BytesIO(mp4), mode="r") as container:
        if not container.streams.video:
            raise ValueError(f"no video stream in {len(mp4)} bytes")
        return sum(1 for p in container.demux(container.streams.video[0]) if p.size > 0)


def spread_clip_indices(num_frames: int, frames_per_clip: int, frame_step: int, num_clips: int) -> list[list[int]]:
    """Frame indices of `num_clips` clips whose starts are spread evenly from the first to the last possible start.

    One clip sits in the middle. A video shorter than one clip gives clips that start at 0 and repeat their last
    frame, as `jepa.data.decode.clip_indices` pads.

    Returns:
        num_clips lists of T indices in ``[0, num_frames)``.
    """
    span = (frames_per_clip - 1) * frame_step + 1
    last_start = max(num_frames - span, 0)
    if num_clips == 1:
        starts = [last_start // 2]
    else:
        starts = [round(i * last_start / (num_clips - 1)) for i in range(num_clips)]
    clips = []
    for start in starts:
        idx = [i for i in range(start, start + span, frame_step) if i < num_frames]
        clips.append(idx + [idx[-1]] * (frames_per_clip - len(idx)))
    return clips


def spatial_views(frames: torch.Tensor, num_views: int) -> list[torch.Tensor]:
    """`num_views` square crops of side min(H, W), spread evenly along the longer side (one is centred).

    Args:
        frames: (T, H, W, 3) uint8.

    Returns:
        num_views tensors (T, side, side, 3) (views of `frames`, no copy).
    """
    _, height, width, _ = frames.shape
    side = min(height, width)
    extra = max(height, width) - side
    offsets = [extra // 2] if num_views == 1 else [round(i * extra / (num_views - 1)) for i in range(num_views)]
    if height > width:
        return [frames[:, o : o + side] for o in offsets]
    return [frames[:, :, o : o + side] for o in offsets]


class LabelledClipDataset(IterableDataset):
    """Labelled clips from webdataset shards: one finite pass (eval), or endless reshuffled passes (training).

    Samples are dealt to (rank, worker) by their index in the pass, so every process sees a disjoint share whatever
    the shard count. Undecodable samples and samples whose json lacks `label_key` are skipped, counted and logged.

    Args:
        shards: Shard spec(s) for `resolve_shards`.
        label_key: The json field holding the integer class (e.g. "label", "direction").
        frames_per_clip: T.
        frame_step: Stride between sampled frames.
        transform: Its `training` flag picks the mode: random clip + random crop, or the deterministic eval views.
        num_clips: Eval clips per video, spread over its length.
        num_views: Eval square crops per clip, spread along the longer side.
        repeat: Start a new pass (new shuffle) when one ends; for training.
        seed: Base seed of the training randomness (unused in eval, which has none).
        shuffle_buffer: Samples held for shuffling in training.

    Yields:
        ``{"video": (V, 3, T, S, S) float32, "label": int, "key": str}`` with V = 1 in training and
        ``num_clips * num_views`` in eval (clip-major).
    """

    def __init__(
        self,
        shards: str | list[str],
        label_key: str = "label",
        frames_per_clip: int = 16,
        frame_step: int = 2,
        transform: VideoTransform | None = None,
        num_clips: int = 1,
        num_views: int = 1,
        repeat: bool = False,
        seed: int = 0,
        shuffle_buffer: int = 256,
    ) -> None:
        super().__init__()
        if num_clips < 1 or num_views < 1:
            raise ValueError(f"num_clips ({num_clips}) and num_views ({num_views}) must be >= 1")
        self.shards = resolve_shards(shards)
        self.label_key = label_key
        self.frames_per_clip = frames_per_clip
        self.frame_step = frame_step
        self.transform = transform if transform is not None else VideoTransform(training=False)
        self.num_clips = num_clips
        self.num_views = num_views
        self.repeat = repeat
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.rank, self.world_size = 0, 1
        self.stats: SkipStats | None = None

    def set_rank(self) -> None:
        """Record (rank, world_size) in the main process, where torch.distributed is initialised (PITFALLS 12)."""
        self.rank, self.world_size = rank_and_world_size()

    def _shard_pass(self, epoch: int, share: int, shares: int, stats: SkipStats) -> Iterator[dict[str, Any]]:
        """Raw tar samples of one pass that belong to share `share` of `shares`."""
        urls = list(self.shards)
        if self.transform.training:
            random.Random(stream_seed(self.seed, epoch, 0, 0, SHARDS)).shuffle(urls)  # same order in every process
        index = 0
        for url in urls:
            stats.shards_tried.add(url)
            for sample in wds.tarfile_samples([{"url": url}], handler=stats.tar_error):
                if index % shares == share:
                    yield sample
                index += 1

    def _views(self, mp4: bytes, generator: torch.Generator) -> torch.Tensor:
        """(V, 3, T, S, S) views of one video."""
        if self.transform.training:
            frames = decode_clip_frames(mp4, self.frames_per_clip, self.frame_step, generator)
            return self.transform(frames, generator).unsqueeze(0)
        # All frames at once (a clip spanning the whole video starts at 0): each eval clip is then a cheap index.
        frames = decode_clip(mp4, count_frames(mp4), 1, generator)
        clips = spread_clip_indices(len(frames), self.frames_per_clip, self.frame_step, self.num_clips)
        return torch.stack([self.transform(v) for idx in clips for v in spatial_views(frames[idx], self.num_views)])

    def _decode(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        meta = json.loads(sample["json"]) if "json" in sample else {}
        if meta.get(self.label_key) is None:
            raise KeyError(f"no '{self.label_key}' in the sample's json (fields: {sorted(meta)})")
        if "mp4" not in sample:
            raise ValueError(f"missing mp4: sample has {sorted(k for k in sample if not k.startswith('__'))}")
        video = self._views(sample["mp4"], generator)
        return {"video": video, "label": int(meta[self.label_key]), "key": sample["__key__"]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        share, shares = self.rank * workers + worker, self.world_size * workers
        epoch = 0
        while True:
            count = 0
            for sample in self._pass(epoch, share, shares):
                count += 1
                yield sample
            if not self.repeat or count == 0:  # a share with no sample (more workers than videos) ends, not spins
                return
            epoch += 1

    def _pass(self, epoch: int, share: int, shares: int) -> Iterator[dict[str, Any]]:
        stats = self.stats = SkipStats(len(self.shards))
        samples = self._shard_pass(epoch, share, shares, stats)
        generator = torch.Generator().manual_seed(stream_seed(self.seed, epoch, 0, share, SAMPLES))
        if self.transform.training and self.shuffle_buffer > 1:
            rng = random.Random(stream_seed(self.seed, epoch, 0, share, SHUFFLE))
            samples = wds.shuffle(self.shuffle_buffer, min(64, self.shuffle_buffer), rng=rng)(samples)
        first_error = ""
        for sample in samples:
            try:
                out = self._decode(sample, generator)
            except Exception as exn:  # noqa: BLE001 - one bad sample must not end an evaluation; it is counted
                first_error = first_error or f"{type(exn).__name__}: {exn}"
                stats.skip(
                    f"{type(exn).__name__}: {exn}", f"sample {sample.get('__key__')} of {sample.get('__url__')}"
                )
                continue
            stats.ok()
            yield out
        if stats.good == 0 and stats.skipped:
            raise NoReadableSamplesError(
                f"none of the {stats.skipped} samples of {self.shards[:3]}... gave a labelled clip, e.g. {first_error}; "
                f"check label_key ('{self.label_key}') and that the shards hold mp4 clips with a json"
            )
        if stats.skipped:
            log.warning("share %d/%d skipped %d samples: %s", share, shares, stats.skipped, dict(stats.reasons))


class LabelledDataModule(L.LightningDataModule):
    """Train and held-out labelled clips for probes; the embedded synthetic dataset by default.

    The default held-out split is a second synthetic set generated with another seed into another folder, so no
    held-out clip is a training clip (the train set is the pretraining set, seed 0).

    Args:
        train_shards: Training shard spec(s); None = the synthetic set in `synthetic_dir`.
        val_shards: Held-out shard spec(s); None = the synthetic set in `val_synthetic_dir`.
        synthetic_dir: Folder of the default training set (generated on first use).
        synthetic: `ensure_synthetic_shards` kwargs of the training set.
        val_synthetic_dir: Folder of the default held-out set.
        val_synthetic: `ensure_synthetic_shards` kwargs of the held-out set (give it another seed).
        label_key: json field holding the class.
        batch_size: Videos per batch per rank, B (each eval video holds num_clips * num_views views).
        num_workers: DataLoader workers per rank.
        frames_per_clip: T (the encoder's clip length).
        frame_step: Stride between sampled frames.
        crop_size: Output side S (a multiple of the encoder's patch size).
        random_resize_scale: Training crop area fraction range.
        random_resize_aspect_ratio: Training crop aspect ratio range.
        horizontal_flip: Training flips; off by default since a flip changes motion-direction labels.
        num_clips: Eval clips per video.
        num_views: Eval spatial views per clip.
        seed: Base seed of the training randomness.
    """

    def __init__(
        self,
        train_shards: str | list[str] | None = None,
        val_shards: str | list[str] | None = None,
        synthetic_dir: str = "data/synthetic_videos",
        synthetic: dict[str, Any] | None = None,
        val_synthetic_dir: str = "data/synthetic_videos_heldout",
        val_synthetic: dict[str, Any] | None = None,
        label_key: str = "label",
        batch_size: int = 16,
        num_workers: int = 2,
        frames_per_clip: int = 16,
        frame_step: int = 2,
        crop_size: int = 256,
        random_resize_scale: Sequence[float] = (0.3, 1.0),
        random_resize_aspect_ratio: Sequence[float] = (0.75, 1.35),
        horizontal_flip: bool = False,
        num_clips: int = 1,
        num_views: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_shards, self.val_shards = train_shards, val_shards
        self.synthetic_dir, self.synthetic = synthetic_dir, dict(synthetic or {})
        self.val_synthetic_dir, self.val_synthetic = val_synthetic_dir, dict(val_synthetic or {"seed": 1})
        self.batch_size = batch_size
        self.num_workers = num_workers
        common = dict(label_key=label_key, frames_per_clip=frames_per_clip, frame_step=frame_step, seed=seed)
        train_tf = VideoTransform(crop_size, random_resize_scale, random_resize_aspect_ratio, horizontal_flip)
        self._train_kwargs = dict(common, transform=train_tf, repeat=True)
        eval_tf = VideoTransform(crop_size, training=False)
        self._val_kwargs = dict(common, transform=eval_tf, num_clips=num_clips, num_views=num_views)
        self.train_set: LabelledClipDataset | None = None
        self.val_set: LabelledClipDataset | None = None

    def _shards(self, spec: str | list[str] | None, folder: str, synthetic: dict[str, Any]) -> str | list[str]:
        return ensure_synthetic_shards(folder, **synthetic) if spec is None else spec

    def prepare_data(self) -> None:
        """Generate the default synthetic sets once per node."""
        self._shards(self.train_shards, self.synthetic_dir, self.synthetic)
        self._shards(self.val_shards, self.val_synthetic_dir, self.val_synthetic)

    def setup(self, stage: str | None = None) -> None:
        """Resolve the shards (a missing path raises FileNotFoundError naming it) and build both streams."""
        if self.train_set is None:
            shards = self._shards(self.train_shards, self.synthetic_dir, self.synthetic)
            self.train_set = LabelledClipDataset(shards, **self._train_kwargs)
        if self.val_set is None:
            shards = self._shards(self.val_shards, self.val_synthetic_dir, self.val_synthetic)
            self.val_set = LabelledClipDataset(shards, **self._val_kwargs)

    def _loader(self, dataset: LabelledClipDataset, drop_last: bool) -> DataLoader:
        dataset.set_rank()
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=drop_last,
            pin_memory=False,
            # forked once: re-forking for every validation pass can deadlock a worker in CPython 3.11 (docs/findings.md)
            persistent_workers=self.num_workers > 0,
            worker_init_fn=StopSignalsIgnored(),  # a group SIGTERM/Ctrl-C is the trainer's to handle
        )

    def train_dataloader(self) -> DataLoader:
        """Endless reshuffled passes; the trainer's `max_steps` ends training (equal batches on every rank)."""
        self.setup("fit")
        return self._loader(self.train_set, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """One pass over the held-out set, each video once over all ranks (uneven batch counts are fine here)."""
        self.setup("validate")
        return self._loader(self.val_set, drop_last=False)

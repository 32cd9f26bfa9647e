"""Weighted dataset mixtures: shares follow the weights, batches are homogeneous in T with masks for that T."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from jepa.data.datamodule import BatchedClips, VideoDataModule
from jepa.data.mixing import DatasetSpec, MixedBatches, mixture_choices
from jepa.data.pipeline import VideoClipDataset
from jepa.data.transforms import VideoTransform

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = (0.5, 0.3, 0.2)


def masks_for_t(batch_size: int, generator: torch.Generator, num_frames: int) -> dict:
    """A batch transform that needs the batch's T, as a mask collator does for its token grid."""
    return {"grid_t": torch.full((batch_size,), num_frames), "noise": torch.rand(batch_size, generator=generator)}


def test_choices_follow_weights_at_every_prefix():
    choices = list(itertools.islice(mixture_choices(WEIGHTS, seed=7), 6000))
    for n in (300, 1000, 6000):
        counts = Counter(choices[:n])
        for i, weight in enumerate(WEIGHTS):
            assert abs(counts[i] / n - weight) <= 0.05 * weight, (n, i, counts)
    assert choices[:50] != list(itertools.islice(mixture_choices(WEIGHTS, seed=8), 50))
    with pytest.raises(ValueError, match="weights"):
        next(mixture_choices([0.0, -1.0], 0))


FRAMES = (1, 2, 1)


def mixture(shards: list[str], batch_size: int) -> MixedBatches:
    sources = []
    for i, frames in enumerate(FRAMES):
        clips = VideoClipDataset(shards, frames, 1, VideoTransform(crop_size=4), seed=i, shuffle_buffer=8)
        sources.append(BatchedClips(clips, batch_size, masks_for_t))
    return MixedBatches(sources, WEIGHTS, seed=0)


@pytest.mark.slow
def test_mixed_stream_shares_within_5_percent_over_2000_clips(shards):
    batches = list(itertools.islice(iter(mixture(shards, batch_size=4)), 500))
    samples = Counter()
    for batch in batches:
        i = int(batch["dataset"][0])
        assert (batch["dataset"] == i).all()  # one dataset per batch
        t = FRAMES[i]
        assert batch["video"].shape == (4, 3, t, 4, 4) and (batch["grid_t"] == t).all()
        samples[i] += len(batch["key"])
    total = sum(samples.values())
    assert total == 2000
    for i, weight in enumerate(WEIGHTS):
        assert abs(samples[i] / total - weight) <= 0.05 * weight, samples


def test_datamodule_mixture_is_reproducible_and_per_rank(shards, monkeypatch):
    def datamodule() -> VideoDataModule:
        specs = [
            DatasetSpec(shards, weight=3.0, frames_per_clip=2),
            DatasetSpec(shards[:1], weight=1.0, frames_per_clip=4, batch_transform=masks_for_t),
        ]
        options = {"batch_size": 2, "num_workers": 2, "crop_size": 8, "steps_per_epoch": 8}
        return VideoDataModule(datasets=specs, batch_transform=masks_for_t, **options)

    def run() -> list[dict]:
        dm = datamodule()
        dm.setup("fit")
        return list(dm.train_dataloader())

    a, b = run(), run()
    assert len(a) == 8 and [x["key"] for x in a] == [x["key"] for x in b]
    assert all(x["video"].shape[2] == (2, 4)[int(x["dataset"][0])] == int(x["grid_t"][0]) for x in a)
    assert {int(x["dataset"][0]) for x in a} == {0, 1}
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    other_rank = run()
    assert len(other_rank) == 8 and [x["key"] for x in other_rank] != [x["key"] for x in a]


def test_shards_and_datasets_together_is_an_error(shards):
    with pytest.raises(ValueError, match="either data.shards or data.datasets"):
        VideoDataModule(shards=shards, datasets=[DatasetSpec(shards)])


def test_mixture_config_builds_and_gives_each_dataset_its_masks(shard_dir):
    spec = str(shard_dir / "shard-{000000..000001}.tar")
    overrides = [
        "data=mixture",
        *[f"data.datasets.{i}.shards='{spec}'" for i in range(3)],
        "encoder.num_frames=4",
        "encoder.img_size=32",
        "encoder.patch_size=8",
        "data.datasets.2.frames_per_clip=2",
        "data.num_workers=0",
        "data.batch_size=2",
    ]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    dm = instantiate(cfg.data, _convert_="all")
    assert [d.weight for d in dm.datasets] == [0.335, 0.1, 0.565]
    dm.setup("fit")
    seen = {}
    for batch in itertools.islice(iter(dm.train_set), 12):
        seen[int(batch["dataset"][0])] = batch
    for i, t in ((0, 4), (2, 2)):
        tokens = (t // 2) * 4 * 4  # tubelet 2, 32 / 8 = 4 patches per side
        ctx, tgt = seen[i]["ctx_idx"][0], seen[i]["tgt_idx"][0]
        assert seen[i]["video"].shape[2] == t and ctx.max() < tokens and tgt.max() < tokens
        assert ctx.shape[1] + tgt.shape[1] <= tokens and (ctx.max() >= 16) == (t == 4)

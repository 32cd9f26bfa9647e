"""Labelled clip streams for probes: finite deterministic eval passes, multi-clip / multi-view, endless training."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from jepa.data.labelled import LabelledClipDataset, spatial_views, spread_clip_indices
from jepa.data.synthetic import make_synthetic_shards
from jepa.data.transforms import VideoTransform

NUM_CLIPS = 12


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("labelled")
    return make_synthetic_shards(str(out), num_clips=NUM_CLIPS, frames=12, size=32, clips_per_shard=5, progress=False)


def test_spread_clip_indices():
    assert spread_clip_indices(12, 4, 2, 1) == [[2, 4, 6, 8]]  # centred: starts 0..5, middle 2
    assert spread_clip_indices(12, 4, 2, 3) == [[0, 2, 4, 6], [2, 4, 6, 8], [5, 7, 9, 11]]
    assert spread_clip_indices(3, 4, 2, 2) == [[0, 2, 2, 2], [0, 2, 2, 2]]  # short video: padded


def test_spatial_views_cover_the_long_side():
    frames = torch.arange(40).view(1, 4, 10, 1).expand(2, 4, 10, 3)  # (T, H=4, W=10, 3), value = pixel index
    views = spatial_views(frames, 3)
    assert [v.shape for v in views] == [(2, 4, 4, 3)] * 3
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 3, 6]  # left, centre, right
    assert int(spatial_views(frames, 1)[0][0, 0, 0, 0]) == 3


def eval_set(shards, **kwargs) -> LabelledClipDataset:
    tf = VideoTransform(crop_size=16, training=False)
    return LabelledClipDataset(shards, frames_per_clip=4, frame_step=2, transform=tf, **kwargs)


def test_eval_pass_is_finite_deterministic_and_split_without_overlap(shards):
    ds = eval_set(shards, label_key="direction", num_clips=2, num_views=3)
    first = list(ds)
    assert len(first) == NUM_CLIPS and len({s["key"] for s in first}) == NUM_CLIPS
    assert first[0]["video"].shape == (6, 3, 4, 16, 16)
    assert all(0 <= s["label"] < 8 for s in first)
    second = list(ds)
    for a, b in zip(first, second, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["video"], b["video"])
    # two ranks share the pass: disjoint, and together every clip once
    shares = []
    for rank in range(2):
        ds.rank, ds.world_size = rank, 2
        shares.append({s["key"] for s in ds})
    assert not shares[0] & shares[1] and shares[0] | shares[1] == {s["key"] for s in first}


def test_eval_with_workers_sees_every_clip_once(shards):
    loader = torch.utils.data.DataLoader(eval_set(shards), batch_size=4, num_workers=2)
    keys = [k for batch in loader for k in batch["key"]]
    assert sorted(keys) == sorted(f"clip{i:06d}" for i in range(NUM_CLIPS))


def test_training_stream_repeats_with_new_views(shards):
    tf = VideoTransform(crop_size=16, random_resize_scale=(0.3, 1.0))
    ds = LabelledClipDataset(shards, frames_per_clip=4, frame_step=2, transform=tf, repeat=True, shuffle_buffer=4)
    samples = list(itertools.islice(ds, 2 * NUM_CLIPS))
    assert samples[0]["video"].shape == (1, 3, 4, 16, 16)
    epochs = [[s["key"] for s in samples[:NUM_CLIPS]], [s["key"] for s in samples[NUM_CLIPS:]]]
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]  # each pass: all clips, new order
    again = list(itertools.islice(ds, NUM_CLIPS))
    assert [s["key"] for s in again] == epochs[0] and torch.equal(again[0]["video"], samples[0]["video"])


def test_missing_label_field_is_named(shards):
    ds = eval_set(shards, label_key="colour")
    with pytest.raises(RuntimeError, match="no 'colour' in the sample's json"):
        list(ds)


def test_missing_shards_name_the_path(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        eval_set(str(tmp_path / "nowhere" / "shard-000000.tar"))


def test_more_shares_than_videos_ends_instead_of_spinning(shards):
    tf = VideoTransform(crop_size=16)
    ds = LabelledClipDataset(shards, frames_per_clip=4, frame_step=2, transform=tf, repeat=True)
    ds.rank, ds.world_size = NUM_CLIPS, NUM_CLIPS + 1  # the last share of the pass gets no video
    assert list(ds) == []

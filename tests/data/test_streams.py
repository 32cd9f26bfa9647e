"""Multi-rank/worker streams, frame-rate sampling, short videos, skip metrics and unreadable shard lists."""

from __future__ import annotations

import csv
import itertools

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from jepa.data.datamodule import VideoDataModule
from jepa.data.decode import decode_clip, decode_clip_torchcodec, encode_mp4, step_for_fps
from jepa.data.pipeline import NoReadableSamplesError, VideoClipDataset
from jepa.data.shards import write_shards
from jepa.data.transforms import VideoTransform


def clip_keys(dataset: VideoClipDataset, epoch: int, rank: int, worker: int, n: int = 12) -> list[str]:
    return [s["key"] for s in itertools.islice(dataset.stream(epoch, rank, worker), n)]


def test_two_ranks_by_two_workers_get_their_own_streams_and_equal_batches(shards, monkeypatch):
    dataset = VideoClipDataset(shards, 2, 1, VideoTransform(crop_size=8))
    streams = {(r, w): clip_keys(dataset, 0, r, w) for r in (0, 1) for w in (0, 1)}
    assert len({tuple(s) for s in streams.values()}) == 4  # resampled, independently seeded per (rank, worker)
    assert clip_keys(dataset, 0, 1, 1) == streams[1, 1] and clip_keys(dataset, 1, 1, 1) != streams[1, 1]

    per_rank = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        options = {"batch_size": 2, "num_workers": 2, "frames_per_clip": 2, "crop_size": 8, "steps_per_epoch": 5}
        dm = VideoDataModule(shards=shards, **options)
        dm.setup("fit")
        per_rank[rank] = [b["key"] for b in dm.train_dataloader()]
    assert len(per_rank[0]) == len(per_rank[1]) == 5
    assert per_rank[0] != per_rank[1]


def test_fps_sets_the_stride_from_the_video_rate(gray_video, frame_index):
    assert (step_for_fps(29.97, 4, 1), step_for_fps(25, 8, 1), step_for_fps(None, 4, 3), step_for_fps(8, 16, 1)) == (
        7,
        3,
        3,
        1,
    )
    mp4 = encode_mp4(gray_video(20), fps=8)
    for fps, step in ((4, 2), (2, 4), (None, 3)):
        clip = decode_clip(mp4, 3, 3, torch.Generator().manual_seed(1), fps=fps).numpy()
        idx = [frame_index(f) for f in clip]
        assert idx == [idx[0], idx[0] + step, idx[0] + 2 * step], (fps, idx)


def test_short_videos_are_skipped_and_counted_with_min_frames(tmp_path, gray_video):
    samples = [
        {"__key__": "short", "mp4": encode_mp4(gray_video(3), fps=8), "json": {"label": 0}},
        {"__key__": "long", "mp4": encode_mp4(gray_video(8), fps=8), "json": {"label": 1}},
    ]
    paths = write_shards(samples, str(tmp_path / "s-%06d.tar"), maxcount=10)
    dataset = VideoClipDataset(paths, 4, 1, VideoTransform(crop_size=8), shuffle_buffer=0, min_frames=4)
    keys = {s["key"] for s in itertools.islice(iter(dataset), 6)}
    assert keys == {"long"} and dataset.stats.reasons["ValueError"] >= 5
    padded = VideoClipDataset(paths, 4, 1, VideoTransform(crop_size=8), shuffle_buffer=0)
    assert {s["key"] for s in itertools.islice(iter(padded), 6)} == {"short", "long"}


def test_unreadable_shard_list_fails_at_setup_with_one_message(corrupt_shards):
    dm = VideoDataModule(shards=corrupt_shards, batch_size=2, frames_per_clip=2, crop_size=8)
    with pytest.raises(NoReadableSamplesError, match="no readable video samples.*make_shards.py"):
        dm.setup("fit")


class MeanTask(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        assert "data_stats" not in batch  # taken out before the model sees the batch
        return (self.weight * batch["video"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_skipped_samples_are_logged_as_a_metric(mixed_shards, tmp_path):
    paths, _ = mixed_shards
    options = {"batch_size": 2, "num_workers": 0, "frames_per_clip": 2, "crop_size": 8, "steps_per_epoch": 6}
    dm = VideoDataModule(shards=paths, **options)
    flags = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
    logger = CSVLogger(tmp_path, name="", version="")
    trainer = L.Trainer(max_steps=6, logger=logger, log_every_n_steps=2, accelerator="cpu", **flags)
    trainer.fit(MeanTask(), datamodule=dm)
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("data/skipped")]
    assert rows and float(rows[-1]["data/skipped"]) > 0
    assert 0 < float(rows[-1]["data/skipped_fraction"]) < 1
    assert sum(s for _, s in dm.data_stats.values()) == float(rows[-1]["data/skipped"])


def test_torchcodec_matches_pyav(gray_video):
    pytest.importorskip("torchcodec.decoders", reason="torchcodec is optional (pip install torchcodec + FFmpeg libs)")
    mp4 = encode_mp4(gray_video(20), fps=8)
    a = decode_clip(mp4, 4, 2, torch.Generator().manual_seed(5), fps=4)
    b = decode_clip_torchcodec(mp4, 4, 2, torch.Generator().manual_seed(5), fps=4)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="torchcodec"):
        decode_clip_torchcodec(b"\x00garbage" * 64, 4, 1, torch.Generator())


def test_skip_warning_counts_skipped_among_all_samples_read(caplog):
    dm = VideoDataModule(shards="unused.tar")
    dm.data_stats = {"0/0/0/0": (18, 12), "0/0/0/1": (0, 8)}  # (good, skipped) per worker
    with caplog.at_level("WARNING"):
        dm._report_data_stats()
    assert "skipped 20 of 38 samples read so far" in caplog.text

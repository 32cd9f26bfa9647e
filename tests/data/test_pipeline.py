from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap

import lightning as L
import pytest
import torch

from jepa.data.datamodule import VideoDataModule
from jepa.data.pipeline import NoReadableSamplesError, VideoClipDataset
from jepa.data.shards import resolve_shards, write_shards
from jepa.data.transforms import VideoTransform


def clip_dataset(shards, **kwargs) -> VideoClipDataset:
    kwargs = {"frames_per_clip": 4, "frame_step": 2, "transform": VideoTransform(crop_size=16), **kwargs}
    return VideoClipDataset(shards, **kwargs)


def take(dataset, n: int) -> list[dict]:
    return list(itertools.islice(iter(dataset), n))


def keys_and_videos(samples: list[dict]) -> tuple[list[str], torch.Tensor]:
    return [s["key"] for s in samples], torch.stack([s["video"] for s in samples])


# --- shard specs ---------------------------------------------------------------------------------------------------


def test_resolve_brace_glob_and_remote(shard_dir, shards):
    assert resolve_shards(str(shard_dir / "shard-{000000..000001}.tar")) == shards
    assert resolve_shards(str(shard_dir / "*.tar")) == shards
    assert resolve_shards(["pipe:cat x.tar", "https://host/a-{0..1}.tar"]) == [
        "pipe:cat x.tar",
        "https://host/a-0.tar",
        "https://host/a-1.tar",
    ]


def test_missing_path_names_it_and_the_fix(shard_dir):
    missing = str(shard_dir / "shard-{000001..000003}.tar")
    with pytest.raises(FileNotFoundError) as info:
        resolve_shards(missing)
    message = str(info.value)
    assert "shard-000002.tar" in message and "shard-000003.tar" in message and "shard-000001" not in message
    assert "make_synthetic.py" in message and "data.shards=null" in message


def test_write_shards_rejects_dotted_keys(tmp_path):
    with pytest.raises(ValueError, match="without dots"):
        write_shards([{"__key__": "a.b", "txt": "x"}], str(tmp_path / "s-%06d.tar"), maxcount=2)
    paths = write_shards(({"__key__": f"k{i}", "txt": "x"} for i in range(5)), str(tmp_path / "t-%06d.tar"), 2)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["t-000000.tar", "t-000001.tar", "t-000002.tar"]


# --- the clip stream -----------------------------------------------------------------------------------------------


def test_samples_have_video_label_direction_key(shards):
    samples = take(clip_dataset(shards), 6)
    for sample in samples:
        assert sample["video"].shape == (3, 4, 16, 16) and sample["video"].dtype == torch.float32
        assert 0 <= sample["label"] < 4 and 0 <= sample["direction"] < 8 and sample["key"].startswith("clip")


def test_same_seed_same_samples_new_epoch_new_samples(shards):
    keys_a, videos_a = keys_and_videos(take(clip_dataset(shards, seed=3), 10))
    keys_b, videos_b = keys_and_videos(take(clip_dataset(shards, seed=3), 10))
    assert keys_a == keys_b and torch.equal(videos_a, videos_b)
    other = clip_dataset(shards, seed=3)
    other.set_epoch(1)
    keys_c, _ = keys_and_videos(take(other, 10))
    assert keys_c != keys_a
    keys_d, _ = keys_and_videos(take(clip_dataset(shards, seed=4), 10))
    assert keys_d != keys_a


def test_passes_without_set_epoch_advance_the_epoch(shards):
    dataset = clip_dataset(shards)
    first, second = take(dataset, 8), take(dataset, 8)
    reference = clip_dataset(shards)
    reference.set_epoch(1)
    assert [s["key"] for s in second] == [s["key"] for s in take(reference, 8)] != [s["key"] for s in first]


def test_rank_changes_the_stream_and_world_size_does_not_raise(shards, monkeypatch):
    rank0 = [s["key"] for s in take(clip_dataset(shards), 10)]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    rank1 = [s["key"] for s in take(clip_dataset(shards), 10)]
    assert rank1 != rank0


def test_corrupt_members_are_skipped_and_counted(mixed_shards, caplog):
    paths, good_keys = mixed_shards
    dataset = clip_dataset(paths, shuffle_buffer=0)
    with caplog.at_level(logging.WARNING, logger="jepa.data.pipeline"):
        samples = take(dataset, 40)
    assert {s["key"] for s in samples} <= good_keys and len(samples) == 40
    stats = dataset.stats.as_dict()
    assert stats["good"] == 40 and stats["skipped"] > 0
    assert {"ValueError", "no samples in shard"} <= set(stats["reasons"])
    assert "bad002" in caplog.text and "missing mp4" in caplog.text
    assert len([r for r in caplog.records if "skipping" in r.message]) <= 5


def test_unreadable_shard_list_raises_instead_of_hanging(corrupt_shards):
    with pytest.raises(NoReadableSamplesError, match="no readable video samples"):
        take(clip_dataset(corrupt_shards), 1)


# --- the DataModule ------------------------------------------------------------------------------------------------


def extra_keys(batch_size: int, generator: torch.Generator) -> dict:
    return {"ctx_idx": [torch.randint(0, 50, (batch_size, 3), generator=generator)]}


def make_datamodule(shards, **kwargs) -> VideoDataModule:
    options = {"batch_size": 3, "num_workers": 2, "frames_per_clip": 4, "crop_size": 16, "steps_per_epoch": 4}
    return VideoDataModule(shards=shards, **{"batch_transform": extra_keys, **options, **kwargs})


def epoch_batches(datamodule: VideoDataModule, epoch: int | None = None) -> list[dict]:
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    if epoch is not None:
        datamodule.set_epoch(epoch)
    return list(loader)


def test_datamodule_batches_in_workers_with_extra_keys(shards):
    batches = epoch_batches(make_datamodule(shards))
    assert len(batches) == 4
    for batch in batches:
        assert batch["video"].shape == (3, 3, 4, 16, 16) and batch["label"].shape == (3,)
        assert batch["direction"].shape == (3,) and len(batch["key"]) == 3
        assert batch["ctx_idx"][0].shape == (3, 3) and batch["ctx_idx"][0].dtype == torch.long


def test_datamodule_reproducible_and_epochs_differ(shards):
    a = epoch_batches(make_datamodule(shards), epoch=1)
    b = epoch_batches(make_datamodule(shards), epoch=1)
    c = epoch_batches(make_datamodule(shards), epoch=2)
    for x, y in zip(a, b, strict=True):
        assert x["key"] == y["key"] and torch.equal(x["video"], y["video"])
        assert torch.equal(x["ctx_idx"][0], y["ctx_idx"][0])
    assert [x["key"] for x in a] != [x["key"] for x in c]


def test_datamodule_missing_shards_raise_at_setup(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tar"):
        make_datamodule(str(tmp_path / "nope.tar")).setup("fit")


def test_datamodule_defaults_to_synthetic(tmp_path):
    synthetic = {"num_clips": 4, "frames": 4, "size": 16, "clips_per_shard": 2, "progress": False}
    datamodule = make_datamodule(None, synthetic_dir=str(tmp_path), synthetic=synthetic, num_workers=0)
    datamodule.prepare_data()
    assert (tmp_path / "manifest.json").is_file()
    batch = epoch_batches(datamodule)[0]
    assert batch["video"].shape == (3, 3, 4, 16, 16)


class RecordingTask(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[list[str]]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).append(batch["key"])
        return (self.weight * batch["video"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(datamodule, max_epochs: int, ckpt_path=None, save_to=None) -> RecordingTask:
    task = RecordingTask()
    flags = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
    trainer = L.Trainer(max_epochs=max_epochs, logger=False, accelerator="cpu", **flags)
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    if save_to is not None:
        trainer.save_checkpoint(save_to)
    return task


def worker_pid(batch_size: int, generator: torch.Generator) -> dict:
    return {"pid": torch.full((batch_size,), os.getpid())}


def test_workers_are_forked_once_not_at_every_epoch(shards):
    """Re-forking at an epoch boundary can deadlock a worker in CPython 3.11 (docs/findings.md): by default the
    workers live through every epoch, and still see each epoch's own data."""
    pids = {}
    for persistent in (True, False):
        kwargs = {} if persistent else {"persistent_workers": False}
        datamodule = make_datamodule(shards, batch_transform=worker_pid, **kwargs)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        passes = [list(loader) for _ in range(3)]
        datamodule.teardown("fit")
        pids[persistent] = {int(p) for batches in passes for b in batches for p in b["pid"]}
        if persistent:
            keys = [[b["key"] for b in batches] for batches in passes]
            assert keys == [[b["key"] for b in epoch_batches(make_datamodule(shards), e)] for e in range(3)]
    assert len(pids[True]) == 2 and len(pids[False]) == 6  # two workers: forked once, or anew at each of 3 passes


class FailingTask(RecordingTask):
    def training_step(self, batch, batch_idx):
        if batch_idx == 2:
            raise RuntimeError("failed on purpose")
        return super().training_step(batch, batch_idx)


def test_a_fit_that_fails_leaves_no_worker_behind(shards):
    """Workers kept across epochs must still stop when fit ends by an exception (Lightning skips the DataModule's
    teardown then): left alive, they ignore SIGTERM and multiprocessing's exit hook waits on them forever."""
    before = set(multiprocessing.active_children())
    trainer = L.Trainer(max_epochs=3, logger=False, accelerator="cpu", enable_progress_bar=False)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        trainer.fit(FailingTask(), datamodule=make_datamodule(shards))
    left = set(multiprocessing.active_children()) - before
    for process in left:  # so that a failure here fails this test instead of hanging the session's exit
        process.kill()
    assert not left, f"{len(left)} DataLoader workers outlived the failed fit"


def test_a_script_exits_with_a_loader_still_holding_its_workers(shards):
    """A loader iterated by hand and never shut down: the interpreter still exits (an exit hook kills workers that ignore SIGTERM)."""
    script = textwrap.dedent(
        f"""
        from jepa.data.datamodule import VideoDataModule
        datamodule = VideoDataModule(shards={shards!r}, batch_size=3, num_workers=2, frames_per_clip=4, crop_size=16,
                                     steps_per_epoch=4)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        print(len(list(loader)), "batches", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "4 batches" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("persistent_workers", [False, True])
def test_lightning_hands_each_epoch_to_the_workers_and_resumes(shards, tmp_path, persistent_workers):
    datamodule = make_datamodule(shards, persistent_workers=persistent_workers)
    task = fit(datamodule, max_epochs=3, save_to=tmp_path / "last.ckpt")
    for epoch in range(3):
        assert task.seen[epoch] == [b["key"] for b in epoch_batches(make_datamodule(shards), epoch)]
    assert task.seen[0] != task.seen[1] != task.seen[2]
    resumed = fit(make_datamodule(shards, num_workers=0), max_epochs=4, ckpt_path=tmp_path / "last.ckpt")
    assert list(resumed.seen) == [3]
    assert resumed.seen[3] == [b["key"] for b in epoch_batches(make_datamodule(shards, num_workers=0), 3)]

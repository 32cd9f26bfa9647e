"""The wandb logger for real (offline): a run writes its metrics, a resume continues the same wandb run, a new run in
a re-created folder gets a new one. The run file is read back with wandb's own protobuf records."""

from __future__ import annotations

import json
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_train import run

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 7-byte file header, records in 32 KiB blocks
FULL, LAST = 1, 4


def records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    ident, _, _ = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", ident
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # too little room left in the block for a record header
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            yield pending
            pending = b""


def read_run(run_file: Path, timeout: float = 60) -> tuple[str, str, dict[int, float]]:
    """(run id, run name, {global step: train/loss}) of one offline run file, once wandb has written all of it."""
    from wandb.proto import wandb_internal_pb2 as pb

    def parsed() -> list:
        out = []
        for raw in records(run_file):
            record = pb.Record()
            record.ParseFromString(raw)
            out.append(record)
        return out

    deadline = time.monotonic() + timeout  # wandb-core writes the file asynchronously, even after wandb.finish()
    while not any(r.WhichOneof("record_type") == "exit" for r in parsed()) and time.monotonic() < deadline:
        time.sleep(0.5)
    run_id = name = ""
    losses = {}
    for record in parsed():
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id, name = record.run.run_id, record.run.display_name
        elif kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            if "train/loss" in row:
                losses[row["trainer/global_step"]] = row["train/loss"]
    return run_id, name, losses


@pytest.fixture()
def offline(monkeypatch):
    # WandbLogger(offline=True) rewrites WANDB_MODE for the whole process (PITFALLS 10): monkeypatch restores it
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def train(run_dir: Path, *overrides: str) -> None:
    import wandb

    run(run_dir, *overrides)
    wandb.finish()  # the CLI's process exit does this; here the next run shares the process


def test_offline_run_is_written_resumed_and_renewed(tmp_path, offline):
    from jepa.data.synthetic import make_synthetic_shards

    make_synthetic_shards(tmp_path / "shards", num_clips=16, frames=8, size=32, clips_per_shard=8, progress=False)
    common = [f"data.shards='{tmp_path}/shards/shard-{{000000..000001}}.tar'", "logger=default"]
    common += ["trainer.log_every_n_steps=1", "data.steps_per_epoch=4"]
    run_dir = tmp_path / "wb"
    train(run_dir, *common, "trainer.max_steps=3")
    first_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    (first,) = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    run_id, name, losses = read_run(first)
    assert (run_id, name) == (first_id, "wb")
    assert sorted(losses) == [0, 1, 2] and all(0 < v < 10 for v in losses.values())

    train(run_dir, *common, "trainer.max_steps=5")  # resumes from last.ckpt: the same wandb run goes on
    resumed = [p for p in run_dir.glob("wandb/offline-run-*/run-*.wandb") if p != first]
    run_id, _, losses = read_run(resumed[0])
    assert run_id == first_id and sorted(losses) == [3, 4]

    shutil.rmtree(run_dir)  # a new run in a re-created folder is a new wandb run
    train(run_dir, *common, "trainer.max_steps=2")
    (fresh,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    run_id, _, losses = read_run(fresh)
    assert run_id != first_id and run_id == (run_dir / "wandb_run_id.txt").read_text().strip()
    assert sorted(losses) == [0, 1]

"""Two-process gloo DDP on CPU: ranks stay identical, and a run resumed mid-epoch reaches the same parameters."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_train import run

from jepa.checkpoints import load_encoder

WORLD = 2
STEPS = 6
COMMON = [
    "trainer=ddp_cpu",
    "trainer.devices=1",  # one process per "node", like SLURM's one task per GPU
    f"trainer.num_nodes={WORLD}",
    "data.steps_per_epoch=4",  # the interruption at step 3 falls mid-epoch
    "callbacks.checkpoint.every_n_train_steps=3",
    *(f"optim.{s}.total_steps={STEPS}" for s in ("lr_schedule", "wd_schedule", "ema_schedule")),
]
JOBS = [
    ("straight", [f"trainer.max_steps={STEPS}"]),
    ("resumed", ["trainer.max_steps=3"]),  # stops (and checkpoints) at step 3
    ("resumed", [f"trainer.max_steps={STEPS}"]),  # same run name: resumes from last.ckpt
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, port: int, shards: str, out: Path, jobs: list[tuple[str, list[str]]], world: int) -> None:
    """One rank (as torchrun / SLURM would start it): runs every job and saves its final weights."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK="0"
    )
    os.environ["NODE_RANK"] = str(rank)
    torch.set_num_threads(1)
    for name, overrides in jobs:
        trainer = run(out / name, f"data.shards='{shards}'", *overrides)
        assert trainer.world_size == world and trainer.global_rank == rank
        torch.save(trainer.lightning_module.state_dict(), out / f"{name}-rank{rank}-step{trainer.global_step}.pt")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    from jepa.data.synthetic import make_synthetic_shards

    out = tmp_path_factory.mktemp("ddp_shards")
    make_synthetic_shards(out, num_clips=32, frames=8, size=32, clips_per_shard=8, progress=False)
    return str(out / "shard-{000000..000003}.tar")


def test_ddp_ranks_agree_and_resume_matches(tmp_path, shards):
    jobs = [(name, [*COMMON, *overrides]) for name, overrides in JOBS]
    mp.start_processes(rank_main, (free_port(), shards, tmp_path, jobs, WORLD), nprocs=WORLD, start_method="spawn")
    weights = {p.stem: torch.load(p, weights_only=True) for p in tmp_path.glob("*.pt")}
    assert {f"straight-rank{r}-step{STEPS}" for r in range(WORLD)} <= set(weights), sorted(weights)
    assert {f"resumed-rank{r}-step{STEPS}" for r in range(WORLD)} <= set(weights), sorted(weights)
    reference = weights[f"straight-rank0-step{STEPS}"]
    initial = weights["resumed-rank0-step3"]
    assert any(not torch.equal(initial[k], reference[k]) for k in reference), "training did not change the weights"
    for name in (f"straight-rank1-step{STEPS}", f"resumed-rank0-step{STEPS}", f"resumed-rank1-step{STEPS}"):
        for key, value in reference.items():
            torch.testing.assert_close(weights[name][key], value, rtol=0, atol=1e-6, msg=f"{name} {key}")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="Lightning's FSDP strategy needs CUDA devices")
def test_fsdp_trains_with_norm_clipping(tmp_path, shards):
    """FSDP (one unit per block) with gradient-norm clipping, which Lightning's FSDP precision alone refuses."""
    world = 1  # one GPU: LOCAL_RANK is 0 in rank_main
    overrides = [
        "trainer=fsdp",
        "trainer.devices=1",
        f"trainer.num_nodes={world}",
        "trainer.gradient_clip_val=0.5",
        "trainer.max_steps=3",
        "callbacks.checkpoint.every_n_train_steps=3",
    ]
    jobs = [("fsdp", overrides)]
    mp.start_processes(rank_main, (free_port(), shards, tmp_path, jobs, world), nprocs=world, start_method="spawn")
    encoder = load_encoder(tmp_path / "fsdp" / "checkpoints" / "last.ckpt")  # one full, loadable checkpoint
    ckpt = torch.load(tmp_path / "fsdp" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3 and encoder.embed_dim == 48
    online = {k.removeprefix("encoder."): v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    target = {k.removeprefix("target_encoder."): v for k, v in ckpt["state_dict"].items() if k.startswith("target_")}
    assert online.keys() == target.keys() and any(not torch.equal(online[k], target[k]) for k in online)

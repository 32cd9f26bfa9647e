"""End-to-end pretraining on generated shards: loss goes down, resume is exact, user errors are clear."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from jepa.checkpoints import load_encoder
from jepa.data.synthetic import make_synthetic_shards
from launch import plot as plot_launcher
from launch import train as train_launcher

REPO = Path(__file__).resolve().parents[1]

train_launcher.register_resolvers()

# A tiny model on 4 frames at 32x32 with 8x8 patches (2x4x4 = 32 tokens).
TINY = [
    "+experiment=cpu_quick",
    "logger=csv",
    "encoder.embed_dim=48",
    "encoder.depth=2",
    "encoder.num_heads=2",
    "encoder.patch_size=8",
    "encoder.num_frames=4",
    "encoder.img_size=32",
    "predictor.predictor_embed_dim=32",
    "predictor.depth=1",
    "predictor.num_heads=2",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.frame_step=1",
    "~callbacks.progress",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("shards")
    paths = make_synthetic_shards(out, num_clips=32, frames=8, size=32, clips_per_shard=8, progress=False)
    assert len(paths) == 4
    return str(out / "shard-{000000..000003}.tar")


def compose_train(run_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(
            "train", overrides=[*TINY, f"paths.output_dir={run_dir.parent}", f"run_name={run_dir.name}", *overrides]
        )


def run(run_dir: Path, *overrides: str):
    return train_launcher.train(compose_train(run_dir, *overrides))


def losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss from the CSV log (steps counted from 1)."""
    out = {}
    with open(run_dir / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                out[int(row["step"]) + 1] = float(row["train/loss"])
    return out


def test_loss_goes_down(tmp_path, shards, capsys):
    run_dir = tmp_path / "down"
    cfg = compose_train(
        run_dir,
        f"data.shards='{shards}'",
        "trainer.max_steps=60",
        "trainer.log_every_n_steps=1",
        "data.steps_per_epoch=10",
    )
    trainer = train_launcher.train(cfg)
    # the closing summary: checkpoint, final loss, metrics, what to run next; then the loss curves
    assert train_launcher.finish(cfg, trainer) == 0
    summary = capsys.readouterr().out
    assert f"run down: finished 60 steps, train/loss {float(trainer.callback_metrics['train/loss']):.4f}" in summary
    assert f"checkpoint  {run_dir / 'checkpoints' / 'last.ckpt'}" in summary
    assert f"metrics     {run_dir / 'csv' / 'metrics.csv'}  (loss curves: python launch/plot.py {run_dir})" in summary
    assert f"next        python launch/probe.py checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}" in summary
    assert plot_launcher.main([str(run_dir)]) == 0 and (run_dir / "loss.png").stat().st_size > 5000
    curve = losses(run_dir)
    assert len(curve) == 60
    first = sum(curve[s] for s in range(1, 11)) / 10
    last = sum(curve[s] for s in range(51, 61)) / 10
    assert last < 0.85 * first, (first, last)
    # the checkpoint loads into a bare frozen encoder
    enc = load_encoder(run_dir / "checkpoints" / "last.ckpt")
    assert enc.embed_dim == 48 and not enc.training
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 4, 32, 32)).shape == (1, 32, 48)


def test_resume_gives_same_losses(tmp_path, shards):
    common = [
        f"data.shards='{shards}'",
        "trainer.log_every_n_steps=1",
        "data.steps_per_epoch=4",
        "callbacks.checkpoint.every_n_train_steps=4",
    ]
    budget = [f"optim.{s}.total_steps=12" for s in ("lr_schedule", "wd_schedule", "ema_schedule")]
    straight = tmp_path / "straight"
    run(straight, *common, "trainer.max_steps=12")
    interrupted = tmp_path / "interrupted"
    run(interrupted, *common, *budget, "trainer.max_steps=8")  # stops at step 8, same schedules
    trainer = run(interrupted, *common, *budget, "trainer.max_steps=12")  # auto-resumes from last.ckpt
    assert trainer.global_step == 12
    a, b = losses(straight), losses(interrupted)
    assert set(range(1, 13)) <= set(a) and set(range(9, 13)) <= set(b)
    for step in range(9, 13):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    # and the weights agree too
    wa = load_encoder(straight / "checkpoints" / "last.ckpt").state_dict()
    wb = load_encoder(interrupted / "checkpoints" / "last.ckpt").state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_block_compiled_training_keeps_checkpoint_keys(tmp_path, shards):
    """`compile=true compile_scope=blocks`: every transformer block compiled alone, fixed token counts, same keys."""
    run_dir = tmp_path / "compiled"
    overrides = [
        f"data.shards='{shards}'",
        "trainer.max_steps=3",
        "data.steps_per_epoch=3",
        "trainer.log_every_n_steps=1",
    ]
    trainer = run(
        run_dir, *overrides, "callbacks.checkpoint.every_n_train_steps=3", "compile=true", "compile_scope=blocks"
    )
    assert trainer.global_step == 3
    task = trainer.lightning_module
    blocks = [*task.encoder.blocks, *task.target_encoder.blocks, *task.predictor.predictor_blocks]
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in blocks)
    assert getattr(task.encoder, "_compiled_call_impl", None) is None  # the rest stays eager
    curve = losses(run_dir)
    assert len(curve) == 3 and all(torch.isfinite(torch.tensor(v)) for v in curve.values())
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert not any("_orig_mod" in k for k in state)


def test_missing_shards_is_one_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "shard-{000000..000001}.tar"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "launch" / "train.py"),
            *TINY,
            f"data.shards='{missing}'",
            f"paths.output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 2
    assert "nowhere" in proc.stderr and "shard" in proc.stderr
    assert "Traceback" not in proc.stderr

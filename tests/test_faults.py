"""The fault table of issue #29, injected into real runs: each fault's message, exit status and "nothing lost".

An interrupted run saves at the step it was signalled; the next run resumes there and ends with the weights of an
uninterrupted run (1e-6) and a metrics.csv with every step exactly once. A diverging run stops naming its steps and
leaves the last good checkpoint as it was. Bad values stop before anything is created.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_preempt import Output
from test_train import REPO, TINY, run

from jepa.checkpoints import load_encoder
from jepa.tasks.guards import NonFiniteLossError

BUDGET = [f"optim.{s}.total_steps=400" for s in ("lr_schedule", "wd_schedule", "ema_schedule")]
# two DataLoader workers: a signal to the process group reaches them too
COMMON = ["data.steps_per_epoch=8", "data.num_workers=2", "trainer.log_every_n_steps=1", *BUDGET]
STRAIGHT_STEPS = 16


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    from jepa.data.synthetic import make_synthetic_shards

    out = tmp_path_factory.mktemp("fault_shards")
    make_synthetic_shards(out, num_clips=32, frames=8, size=32, clips_per_shard=8, progress=False)
    return str(out / "shard-{000000..000003}.tar")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shards) -> Path:
    """An uninterrupted run with a checkpoint after every step: the reference every resumed run must match."""
    run_dir = tmp_path_factory.mktemp("straight") / "straight"
    every_step = ["callbacks.checkpoint.every_n_train_steps=1", f"trainer.max_steps={STRAIGHT_STEPS}"]
    run(run_dir, f"data.shards='{shards}'", *COMMON, *every_step)
    return run_dir


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [row for row in csv.DictReader(f) if row.get("train/loss")]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def launch(tmp_path: Path, run_name: str, shards: str, *overrides: str) -> tuple[subprocess.Popen, Output]:
    """`launch/train.py` in its own process group (as a shell job, `timeout` or a SLURM step runs it)."""
    cmd = [sys.executable, str(REPO / "launch" / "train.py"), *TINY, f"data.shards='{shards}'", *COMMON]
    cmd += ["trainer.max_steps=400", f"paths.output_dir={tmp_path}", f"run_name={run_name}", *overrides]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env, start_new_session=True
    )
    return proc, Output(proc)


@pytest.mark.parametrize(
    ("sig", "status"),
    [
        (signal.SIGTERM, 128 + signal.SIGTERM),
        (signal.SIGINT, -signal.SIGINT),
    ],  # Ctrl-C: dies by SIGINT, as shells expect
    ids=["group-SIGTERM", "Ctrl-C"],
)
def test_group_signal_saves_the_step_and_the_resume_is_exact(tmp_path, shards, straight, sig, status):
    proc, output = launch(tmp_path, "interrupted", shards)
    try:
        output.wait_for("preemption handler armed", timeout=240)
        os.killpg(proc.pid, sig)  # the whole group: trainer and its DataLoader workers
        rc = proc.wait(timeout=120)
    finally:
        proc.kill()
    text = output.text
    assert rc == status, text[-3000:]
    assert "Traceback" not in text and "killed by signal" not in text, text[-3000:]
    saved = int(re.search(rf"signal {sig.name}: saved \S+last\.ckpt at step (\d+)", text).group(1))
    assert 1 <= saved <= STRAIGHT_STEPS - 3, text[-3000:]
    assert f"stopped by {sig.name} at step {saved} of 400" in text

    # nothing lost: the next run resumes at the saved step and lands on the uninterrupted run's weights ...
    total = saved + 3
    run(tmp_path / "interrupted", f"data.shards='{shards}'", *COMMON, f"trainer.max_steps={total}")
    a = weights(straight / "checkpoints" / f"step{total:08d}.ckpt")
    b = weights(tmp_path / "interrupted" / "checkpoints" / "last.ckpt")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    # ... and its metrics.csv has every step once, the resumed ones equal to the uninterrupted run's
    rows = metric_rows(tmp_path / "interrupted")
    assert [int(r["step"]) for r in rows] == list(range(total))
    reference = {int(r["step"]): float(r["train/loss"]) for r in metric_rows(straight)}
    for row in rows:
        assert float(row["train/loss"]) == pytest.approx(reference[int(row["step"])], rel=1e-5, abs=1e-6)


def test_nan_loss_stops_naming_the_steps_and_keeps_the_last_good_checkpoint(tmp_path, shards, straight):
    run_dir = tmp_path / "diverged"
    (run_dir / "checkpoints").mkdir(parents=True)
    good = run_dir / "checkpoints" / "last.ckpt"
    good.write_bytes((straight / "checkpoints" / "step00000008.ckpt").read_bytes())
    before = good.read_bytes()
    huge_lr = [f"optim.lr_schedule.{k}=1e30" for k in ("start", "peak", "final")]
    every_step = ["callbacks.checkpoint.every_n_train_steps=1", "callbacks.nonfinite.patience=3"]
    with pytest.raises(NonFiniteLossError) as err:
        run(run_dir, f"data.shards='{shards}'", *COMMON, *huge_lr, *every_step, "trainer.max_steps=40")
    message = str(err.value)
    assert re.search(r"not finite \(nan or inf\) at steps (\d+)-(\d+) \(3 steps in a row", message), message
    assert "callbacks.nonfinite.patience=3" in message and "optim.lr_schedule.peak" in message
    # no checkpoint was written from a step with a NaN loss: last.ckpt is the last step whose loss was finite
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    first_bad = int(re.search(r"at steps (\d+)-", message).group(1))
    assert ckpt["global_step"] == first_bad - 1 and good.read_bytes() != before
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    load_encoder(good)  # loads: finite
    logged = {int(r["step"]): float(r["train/loss"]) for r in metric_rows(run_dir)}
    assert all(logged[s - 1] != logged[s - 1] for s in range(first_bad, first_bad + 2))  # NaN rows are kept


def test_nan_exit_status_and_one_line(tmp_path, shards):
    huge_lr = [f"optim.lr_schedule.{k}=1e30" for k in ("start", "peak", "final")]
    proc, output = launch(tmp_path, "nan", shards, *huge_lr, "trainer.max_steps=30", "data.num_workers=0")
    rc = proc.wait(timeout=240)
    text = output.text
    assert rc == 3, text[-3000:]
    assert "Traceback" not in text
    assert re.search(r"^error: training diverged: the loss was not finite", text, re.M), text[-3000:]


def test_wrong_typed_value_stops_before_anything_is_created(tmp_path):
    cmd = [sys.executable, str(REPO / "launch" / "train.py"), *TINY, "data.batch_size=abc", "trainer.max_steps=1.5"]
    cmd += [f"paths.output_dir={tmp_path}", "run_name=typo"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert (
        "data.batch_size='abc': expected int" in proc.stderr and "trainer.max_steps=1.5: expected int" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "typo").exists()  # no run folder, no wandb run, no data

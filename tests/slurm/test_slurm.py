"""On a real SLURM cluster (tests/slurm/start_cluster.sh): 2-node gloo pretraining submitted with launch/submit.py,
preempted with USR1 mid-run, requeued by itself, resumed at the saved step, same final weights as without the
interruption. Skipped when no cluster with two idle nodes is running."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from test_train import TINY  # noqa: E402


def idle_nodes() -> int:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return 0
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (subprocess.SubprocessError, OSError):
        return 0
    return sum(line.strip() in ("idle", "mixed") for line in out.splitlines())


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        idle_nodes() < 2,
        reason="no SLURM cluster with 2 idle nodes (start one with `tests/slurm/start_cluster.sh 2`, root only)",
    ),
]

STEPS = 120


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    from jepa.data.synthetic import make_synthetic_shards

    out = tmp_path_factory.mktemp("slurm_shards")
    make_synthetic_shards(out, num_clips=32, frames=8, size=32, clips_per_shard=8, progress=False)
    return str(out / "shard-{000000..000003}.tar")


def submit(out: Path, run_name: str, shards: str) -> str:
    overrides = [
        *TINY,
        f"data.shards='{shards}'",
        "data.steps_per_epoch=6",
        "trainer=ddp_cpu",
        f"trainer.max_steps={STEPS}",
        f"callbacks.checkpoint.every_n_train_steps={STEPS}",
        "launcher.nodes=2",
        "launcher.gpus_per_node=0",
        "launcher.tasks_per_node=1",
        "launcher.cpus_per_task=1",
        "launcher.time=15",
        f"paths.output_dir={out}",
        f"run_name={run_name}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "launch" / "submit.py"), *overrides],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def job_info(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def wait_state(job_id: str, states: set[str], timeout: float) -> dict[str, str]:
    """Polls `scontrol` (faster than `sbatch --wait`, SLURM_LOCAL.md item 6)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = job_info(job_id)
        if info.get("JobState") in states:
            return info
        time.sleep(1)
    raise AssertionError(f"job {job_id} not in {states} after {timeout} s: {job_info(job_id)}")


def wait_log(path: Path, pattern: str, count: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if len(re.findall(pattern, text)) >= count:
            return text
        time.sleep(0.5)
    raise AssertionError(f"{count}x {pattern!r} not in {path} after {timeout} s:\n{text[-4000:]}")


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS
    return ckpt["state_dict"]


def test_two_nodes_preempt_requeue_resume(tmp_path, shards):
    straight_id = submit(tmp_path, "straight", shards)
    preempted_id = submit(tmp_path, "preempted", shards)  # queued behind the first: both use the two nodes

    info = wait_state(straight_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=300)
    log = (tmp_path / "straight" / f"slurm-{straight_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert "Restarts" in info and info["Restarts"] == "0"
    for rank in range(2):  # both ranks ran the training (one Hydra log per rank)
        rank_log = (tmp_path / "straight" / f"train-rank{rank}.log").read_text()
        assert "preemption handler armed" in rank_log, rank_log[-2000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log

    # preempt mid-run, once both ranks train (a signal before the handler exists kills a task, SLURM_LOCAL.md item 2)
    out = tmp_path / "preempted" / f"slurm-{preempted_id}.out"
    wait_log(out, "preemption handler armed", 2, timeout=300)
    # at once: on a fast idle machine the whole run takes a few seconds (the save lands at step >= 1 anyway)
    subprocess.run(["scancel", "--signal=USR1", preempted_id], check=True)
    info = wait_state(preempted_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=300)
    log = out.read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert info["Restarts"] == "1", info
    saved = [int(s) for s in re.findall(r"signal [^:]+: saved \S*last\.ckpt at step (\d+)", log)]
    assert len(saved) == 2 and saved[0] == saved[1] and 0 < saved[0] < STEPS, log[-4000:]  # both ranks, same step
    assert f"requeued SLURM job {preempted_id}" in log
    assert f"job {preempted_id} restart 1" in log
    assert "Restoring states from the checkpoint path at" in log and "last.ckpt" in log

    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "preempted")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher not installed",
)
def test_submitit_sweep_job_saves_requeues_and_resumes(tmp_path, shards):
    """submitit installs its own USR2 handler first (PITFALLS 7): the callback still saves, requeues, resumes."""
    cmd = [sys.executable, str(REPO / "launch" / "train.py"), "-m", "hydra/launcher=jepa_slurm", *TINY]
    cmd += [f"data.shards='{shards}'", "data.steps_per_epoch=6", "trainer=ddp_cpu", "trainer.max_steps=200"]
    cmd += ["hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=0", "hydra.launcher.tasks_per_node=1"]
    cmd += ["hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=15", f"paths.output_dir={tmp_path}"]
    cmd += ["run_name=sweep"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sweep = tmp_path / "multirun" / "sweep"
        deadline = time.monotonic() + 120
        while not list(sweep.glob(".submitit/*/*_submitted.pkl")) and time.monotonic() < deadline:
            time.sleep(0.5)
        job_id = next(sweep.glob(".submitit/*/*_submitted.pkl")).parent.name
        logs = sweep / ".submitit" / job_id
        wait_log(logs / f"{job_id}_0_log.out", "preemption handler armed", 1, timeout=300)
        wait_log(logs / f"{job_id}_1_log.out", "preemption handler armed", 1, timeout=60)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # submitit's warning signal
        info = wait_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=300)
        log = (logs / f"{job_id}_0_log.out").read_text() + (logs / f"{job_id}_0_log.err").read_text()
        assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", (info, log[-4000:])
        saved = int(re.search(r"signal SIGUSR2: saved (\S+) at step (\d+)", log).group(2))
        assert 0 < saved < 200
        assert f"requeued SLURM job {job_id}" in log
        assert f"Restoring states from the checkpoint path at {sweep}/0/checkpoints/last.ckpt" in log
        ckpt = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["global_step"] == 200
        assert launcher.wait(timeout=120) == 0
    finally:
        launcher.kill()

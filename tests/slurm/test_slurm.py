"""On a real SLURM cluster (tests/slurm/start_cluster.sh): 2-node gloo pretraining submitted with launch/submit.py,
stopped mid-run by USR1 (the warning signal), by a plain `scancel` and by its time limit (SIGTERM to every task,
no warning signal), requeued by itself, resumed at the saved step, with the weights of an uninterrupted run and every
metrics row once. Skipped when no cluster with two idle nodes is running."""

from __future__ import annotations

import csv
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


def submit(out: Path, run_name: str, shards: str, *extra: str) -> str:
    overrides = [
        *TINY,
        f"data.shards='{shards}'",
        # few epoch boundaries: each forks the DataLoader worker anew, and a fork racing the previous iterator's queue
        # feeder thread can deadlock the child in CPython 3.11 (docs/findings.md)
        "data.steps_per_epoch=40",
        "data.num_workers=1",  # a DataLoader worker per rank: SLURM signals it too
        "trainer=ddp_cpu",
        f"trainer.max_steps={STEPS}",
        f"callbacks.checkpoint.every_n_train_steps={STEPS}",
        "trainer.log_every_n_steps=1",
        "launcher.nodes=2",
        "launcher.gpus_per_node=0",
        "launcher.tasks_per_node=1",
        "launcher.cpus_per_task=1",
        "launcher.time=15",
        f"paths.output_dir={out}",
        f"run_name={run_name}",
        *extra,
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


def cluster_report(job_id: str) -> str:
    """What a stuck job looks like: its state and reason, the nodes' states, the tail of its output."""
    info = job_info(job_id)
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T %E"], capture_output=True, text=True).stdout
    out = Path(info.get("StdOut", ""))
    tail = out.read_text()[-3000:] if out.is_file() else "(no output file)"
    state = {k: info.get(k) for k in ("JobState", "Reason", "Restarts", "RunTime", "TimeLimit", "NodeList")}
    return f"job {job_id}: {state}\nnodes:\n{nodes}output {out}:\n{tail}"


def wait_state(job_id: str, states: set[str], timeout: float) -> dict[str, str]:
    """Polls `scontrol` (faster than `sbatch --wait`, SLURM_LOCAL.md item 6)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = job_info(job_id)
        if info.get("JobState") in states:
            return info
        time.sleep(1)
    raise AssertionError(f"job {job_id} not in {states} after {timeout} s; {cluster_report(job_id)}")


def wait_log(path: Path, pattern: str, count: int, timeout: float, job_id: str | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if len(re.findall(pattern, text)) >= count:
            return text
        time.sleep(0.5)
    report = cluster_report(job_id) if job_id else ""
    raise AssertionError(f"{count}x {pattern!r} not in {path} after {timeout} s:\n{text[-4000:]}\n{report}")


DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}


@pytest.fixture(autouse=True)
def no_job_outlives_its_test():
    """A test that fails or times out leaves its jobs behind; cancelled here, they cannot hold the nodes the next
    test's jobs wait for (one stuck job would otherwise fail every later test)."""
    yield
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["scancel", f"--user={user}"], capture_output=True)


def weights(path: Path, step: int) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == step
    return ckpt["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def logged_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shards) -> Path:
    """An uninterrupted 2-node run of STEPS steps: the reference the interrupted runs must match."""
    out = tmp_path_factory.mktemp("slurm_straight")
    job_id = submit(out, "straight", shards)
    info = wait_state(job_id, DONE, timeout=600)
    log = (out / "straight" / f"slurm-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert "Restarts" in info and info["Restarts"] == "0"
    for rank in range(2):  # both ranks ran the training (one Hydra log per rank)
        rank_log = (out / "straight" / f"train-rank{rank}.log").read_text()
        assert "preemption handler armed" in rank_log, rank_log[-2000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    return out / "straight"


def check_requeued_once(job_id: str, log_path: Path, signal_name: str) -> int:
    """The job saved on both ranks at the same step, requeued itself, resumed there and completed; the step."""
    info = wait_state(job_id, DONE, timeout=600)
    log = log_path.read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert info["Restarts"] == "1", info
    saved = [int(s) for s in re.findall(rf"signal {signal_name}: saved \S*last\.ckpt at step (\d+)", log)]
    assert len(saved) == 2 and saved[0] == saved[1] and 0 < saved[0] < STEPS, log[-4000:]  # both ranks, same step
    assert f"requeued SLURM job {job_id}" in log
    assert f"job {job_id} restart 1" in log
    assert "Restoring states from the checkpoint path at" in log and "last.ckpt" in log
    assert "Traceback" not in log and "killed by signal" not in log, log[-4000:]
    return saved[0]


@pytest.mark.parametrize("how", ["USR1", "plain scancel"])
def test_two_nodes_stopped_requeue_and_resume_exactly(tmp_path, shards, straight, how):
    """USR1: the warning signal. A plain `scancel` (SIGTERM to every task, workers included): SLURM's preemption
    and cancel path, which requeues too (`scancel --signal=INT` stops for good, saved)."""
    job_id = submit(tmp_path, "stopped", shards)
    out = tmp_path / "stopped" / f"slurm-{job_id}.out"
    # once both ranks train: a signal before the handler exists kills a task (SLURM_LOCAL.md item 2); at once, since
    # on a fast idle machine the whole run takes a few seconds (the save lands at step >= 1 anyway)
    wait_log(out, "preemption handler armed", 2, timeout=300, job_id=job_id)
    subprocess.run(["scancel", "--signal=USR1", job_id] if how == "USR1" else ["scancel", job_id], check=True)
    check_requeued_once(job_id, out, "SIGUSR1" if how == "USR1" else "SIGTERM")
    b = weights(tmp_path / "stopped" / "checkpoints" / "last.ckpt", STEPS)
    assert_same_weights(weights(straight / "checkpoints" / "last.ckpt", STEPS), b)
    assert logged_steps(tmp_path / "stopped") == list(range(STEPS))  # every step once, across the requeue


def test_time_limit_without_warning_signal_requeues_and_resumes_exactly(tmp_path, shards):
    """`--time=1` and no `--signal`: at the limit SLURM sends SIGTERM to every task, then SIGKILL after KillWait. The
    run saves at that step and requeues; the resumed run lands on the weights of an uninterrupted one."""
    endless = ["trainer.max_steps=100000", "callbacks.checkpoint.every_n_train_steps=10"]
    endless += [f"optim.{s}.total_steps=100000" for s in ("lr_schedule", "wd_schedule", "ema_schedule")]
    job_id = submit(tmp_path, "limited", shards, *endless, "launcher.time=1", "launcher.signal=null")
    run_dir = tmp_path / "limited"
    out = run_dir / f"slurm-{job_id}.out"
    log = wait_log(out, f"job {job_id} restart 1", 1, timeout=420, job_id=job_id)  # 60 s of training, then the limit
    assert "DUE TO TIME LIMIT" in log, log[-4000:]
    saved = [int(s) for s in re.findall(r"signal SIGTERM: saved \S*last\.ckpt at step (\d+)", log)]
    assert len(saved) == 2 and saved[0] == saved[1] > 0, log[-4000:]
    assert f"requeued SLURM job {job_id}" in log
    # the resumed run gets time to go on (on a loaded machine one more minute may not reach the next checkpoint, and
    # the limit would requeue it again)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=30"], check=True)
    # the resumed run goes on past the next kept checkpoint; then stop it for good (SIGINT: save, no requeue)
    check = 10 * (saved[0] // 10 + 1)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / f"step{check + 10:08d}.ckpt").exists() and time.monotonic() < deadline:
        time.sleep(1)
    subprocess.run(["scancel", "--signal=INT", job_id], check=True)
    wait_state(job_id, DONE, timeout=120)
    assert "signal SIGINT: saved" in out.read_text() and out.read_text().count(f"requeued SLURM job {job_id}") == 1
    resumed = weights(run_dir / "checkpoints" / f"step{check:08d}.ckpt", check)
    assert "Restoring states from the checkpoint path at" in out.read_text()

    # the same run without interruption, to that step
    straight_id = submit(tmp_path, "unlimited", shards, *endless, f"trainer.max_steps={check}")
    # a few minutes at most; the wait ends (with the cluster's state) before the test's own 600 s limit does
    assert wait_state(straight_id, DONE, timeout=240)["JobState"] == "COMPLETED", cluster_report(straight_id)
    assert_same_weights(weights(tmp_path / "unlimited" / "checkpoints" / "last.ckpt", check), resumed)
    assert logged_steps(run_dir)[:check] == list(range(check))  # the requeue lost no row and repeated none


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
        wait_log(logs / f"{job_id}_0_log.out", "preemption handler armed", 1, timeout=300, job_id=job_id)
        wait_log(logs / f"{job_id}_1_log.out", "preemption handler armed", 1, timeout=60, job_id=job_id)
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

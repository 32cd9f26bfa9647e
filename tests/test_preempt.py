"""Preemption: a warning signal makes a running training save at the next step and exit cleanly; the next run
resumes at the saved step and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from test_train import REPO, TINY, run

from jepa.tasks.callbacks import PreemptionCheckpoint

BUDGET = [f"optim.{s}.total_steps=400" for s in ("lr_schedule", "wd_schedule", "ema_schedule")]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    from jepa.data.synthetic import make_synthetic_shards

    out = tmp_path_factory.mktemp("preempt_shards")
    make_synthetic_shards(out, num_clips=32, frames=8, size=32, clips_per_shard=8, progress=False)
    return str(out / "shard-{000000..000003}.tar")


class Output:
    """Collects a process's merged output on a thread; `wait_for` blocks until a line matches."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self._thread.start()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{''.join(self.lines)[-3000:]}")

    @property
    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def test_signal_saves_exits_and_resumes_exactly(tmp_path, shards):
    run_dir = tmp_path / "preempted"
    common = [f"data.shards='{shards}'", "data.steps_per_epoch=4", *BUDGET]
    cmd = [sys.executable, str(REPO / "launch" / "train.py"), *TINY, *common, "trainer.max_steps=400"]
    cmd += [f"paths.output_dir={tmp_path}", f"run_name={run_dir.name}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
    output = Output(proc)
    try:
        output.wait_for("preemption handler armed", timeout=240)
        proc.send_signal(signal.SIGUSR1)
        rc = proc.wait(timeout=120)
    finally:
        proc.kill()
    text = output.text
    assert rc == 0, text[-3000:]
    saved = int(re.search(r"signal SIGUSR1: saved .*last\.ckpt at step (\d+)", text).group(1))
    assert 1 <= saved < 400, text[-3000:]
    assert "Traceback" not in text
    assert "not a SLURM job: not requeueing" in text
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == saved
    assert not list((run_dir / "checkpoints").glob("*.tmp")), "the temporary file was renamed into place"

    # the next run resumes at the saved step (mid-epoch unless saved is a multiple of 4) ...
    total = saved + 3
    resumed = run(run_dir, *common, f"trainer.max_steps={total}")
    assert resumed.global_step == total
    # ... and lands where a run that was never interrupted lands
    straight = run(tmp_path / "straight", *common, f"trainer.max_steps={total}")
    a, b = straight.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_handler_only_sets_a_flag_and_restores_handlers(tmp_path):
    callback = PreemptionCheckpoint(str(tmp_path), signals=("SIGUSR2",), stop_signals=("SIGTERM",))
    before, before_term = signal.getsignal(signal.SIGUSR2), signal.getsignal(signal.SIGTERM)
    callback.setup(None, None, "fit")
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert callback.received == signal.SIGUSR2
        os.kill(os.getpid(), signal.SIGTERM)  # a later SIGTERM does not turn a requeue into a plain stop
        assert callback.received == signal.SIGUSR2
    finally:
        callback.teardown(None, None, "fit")
    assert signal.getsignal(signal.SIGUSR2) == before and signal.getsignal(signal.SIGTERM) == before_term


def test_slurm_job_keeps_the_warning_handler_after_training(tmp_path, monkeypatch):
    """A USR1 between the last step and the process exit must not kill a finished SLURM job (it would be FAILED)."""
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    before = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        callback = PreemptionCheckpoint(str(tmp_path), signals=("SIGUSR1",), stop_signals=())
        callback.setup(None, None, "fit")
        callback.teardown(None, None, "fit")
        os.kill(os.getpid(), signal.SIGUSR1)  # with the default action this would end pytest
        assert callback.received == signal.SIGUSR1
    finally:
        signal.signal(signal.SIGUSR1, before)

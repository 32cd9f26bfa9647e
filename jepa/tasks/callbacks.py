"""Preemption-safe training: save on a warning signal at the next step boundary, requeue on SLURM, exact RNG resume.

A cluster sends a warning signal before it stops a job (SLURM: ``#SBATCH --signal=USR1@120`` or
``scancel --signal=USR1``; submitit: USR2), and SIGTERM when it stops it (SLURM at the time limit or on a plain
``scancel``, ``timeout``, ``kill``), to every process of the job. `PreemptionCheckpoint` only sets a flag in the
handler; at the end of the current training step all ranks agree on the flag (one tiny all-reduce), save
``last.ckpt`` together (written to a temporary name, then renamed, so a kill mid-write never leaves a truncated
checkpoint), rank 0 requeues the SLURM job, and the trainer stops cleanly. The requeued job finds ``last.ckpt`` and
resumes there. SIGINT (Ctrl-C) saves and stops without requeueing; a second Ctrl-C aborts at once.

DataLoader workers get the signals too (a group signal reaches every process); they ignore SIGTERM and SIGINT
(`jepa.data.workers.StopSignalsIgnored`) and leave them to the main process, which shuts them down after the save.

Lightning's own SLURM auto-requeue is not used: it saves inside the signal handler (a collective in a handler can
deadlock, shared/SLURM_LOCAL.md item 14) and never fires under submitit, whose USR2 handler is installed first
(PITFALLS 7).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` takes: ``<array job>_<task>`` for array jobs, else ``SLURM_JOB_ID``."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def atomic_save(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary name on all ranks, then rank 0 renames it into place."""
    tmp = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(tmp)  # collective: every rank joins, rank 0 (or each shard owner) writes
    if trainer.is_global_zero:
        if path.is_dir():  # a sharded (directory) checkpoint cannot be replaced by a rename
            shutil.rmtree(path)
        os.replace(tmp, path)
    trainer.strategy.barrier("atomic_save")


class PreemptionCheckpoint(L.Callback):
    """Save ``dirpath/filename`` at the next step boundary after a warning signal, then requeue and stop.

    Args:
        dirpath: Checkpoint folder (the run's ``checkpoints/``, where the launcher looks for ``last.ckpt``).
        filename: Checkpoint name; ``last.ckpt`` is what an automatic resume starts from.
        signals: Signals that mean "save, requeue and stop" (names like ``"SIGUSR1"``): the warning signals, and
            SIGTERM, which SLURM sends at the time limit (without ``--signal``) and on ``scancel``. Outside SLURM
            they save and stop.
        stop_signals: Signals that mean "save and stop" without requeueing (SIGINT: Ctrl-C, or
            ``scancel --signal=INT`` to stop a SLURM job for good with a checkpoint).
        requeue: Requeue the SLURM job (``scontrol requeue``) after saving; ignored outside SLURM.
        save_at_end: Also save at the end of training when the last checkpoint is not of the final step.

    After the stop, `received` names the signal and `requeued` says whether the job was requeued (the launcher
    turns that into the exit status).
    """

    def __init__(
        self,
        dirpath: str,
        filename: str = "last.ckpt",
        signals: tuple[str, ...] = ("SIGUSR1", "SIGUSR2", "SIGTERM"),
        stop_signals: tuple[str, ...] = ("SIGINT",),
        requeue: bool = True,
        save_at_end: bool = True,
    ) -> None:
        self.path = Path(dirpath) / filename
        self.save_at_end = save_at_end
        self.signals = [signal.Signals[name] for name in signals]
        self.stop_signals = [signal.Signals[name] for name in stop_signals]
        self.requeue = requeue
        self.received: signal.Signals | None = None
        self.saved_step: int | None = None
        self.requeued = False
        self._last_saved_step: int | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: saving needs collectives, which must not run inside a signal handler.
        if signum == signal.SIGINT and self.received == signal.SIGINT and self.saved_step is None:
            raise KeyboardInterrupt  # a second Ctrl-C before the save: the user wants out now
        if self.received is None or self.received in self.stop_signals:
            self.received = signal.Signals(signum)

    def _install(self) -> None:
        for sig in (*self.signals, *self.stop_signals):
            previous = signal.signal(sig, self._handler)
            self._previous.setdefault(sig, previous)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Before the data loader forks its workers, so they inherit a handler instead of dying from the signal.
        self.received, self.saved_step, self.requeued, self._last_saved_step = None, None, False, None
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Again after Lightning's signal connector, whose SIGTERM handler runs a collective inside the handler.
        self._install()
        names = ", ".join(s.name for s in self.signals)
        log.info("preemption handler armed: %s saves %s at the next step and requeues", names, self.path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.saved_step is not None:  # saved already; the trainer stops at this step's end
            return
        # Ranks may get the signal at different steps (or only some of them): decide together, every step.
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        atomic_save(trainer, self.path)
        self.saved_step = trainer.global_step
        name = self.received.name if self.received is not None else "on another rank"
        log.warning("signal %s: saved %s at step %d", name, self.path, trainer.global_step)
        requeue = self.requeue and self.received not in self.stop_signals
        job_id = slurm_job_id()
        self.requeued = requeue and job_id is not None
        if self.requeued and trainer.is_global_zero:
            self.requeued = self._requeue(job_id)
        elif not self.requeued:
            log.warning("%s: not requeueing; run the same command again to resume", self._why_not(requeue, job_id))
        trainer.should_stop = True

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._last_saved_step = checkpoint.get("global_step")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # ModelCheckpoint saves every N steps only: a run whose max_steps is not a multiple of N would end with a
        # last.ckpt some steps behind. Save the final step unless a checkpoint of it was just written.
        if self.save_at_end and self._last_saved_step != trainer.global_step:
            atomic_save(trainer, self.path)
            log.info("saved %s at the final step %d", self.path, trainer.global_step)

    def _why_not(self, requeue: bool, job_id: str | None) -> str:
        if job_id is None:
            return "not a SLURM job"
        return f"{self.received.name} means stop" if self.received is not None else "requeue=false"

    def _requeue(self, job_id: str) -> bool:
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
        if result.returncode == 0:
            log.warning("requeued SLURM job %s", job_id)
            return True
        log.error("`scontrol requeue %s` failed (%d): %s", job_id, result.returncode, result.stderr.strip())
        return False

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        in_slurm_job = slurm_job_id() is not None
        for sig, previous in self._previous.items():
            # After a requeue slurmd sends SIGTERM while the ranks shut down: left to its default action it kills one
            # rank, and the other then waits in the final barrier until SIGKILL (KillWait, 30 s).
            keep = self.requeued and sig == signal.SIGTERM
            # A warning signal can also arrive after the last step, while the process exits: the default action
            # would kill a finished job and SLURM would mark it FAILED. The flag-only handler stays: nothing to save.
            keep = keep or (in_slurm_job and sig in self.signals and previous in (signal.SIG_DFL, None))
            if previous is not None and not keep:
                signal.signal(sig, previous)
        self._previous = {}


def rng_state() -> dict[str, Any]:
    """This process's Python, numpy, torch CPU and CUDA generator states."""
    # plain lists and tensors only: checkpoints load with torch's weights-only unpickler
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGState(L.Callback):
    """Stores every rank's RNG states in the checkpoint and restores each rank's own on resume.

    Lightning saves model, optimizer, loops and callbacks but no generator states; with them, drop-path and
    any other global-RNG use continue exactly as in an uninterrupted run.
    """

    def state_dict(self) -> dict[str, Any]:
        # Called on every rank while a checkpoint is assembled; rank 0 writes the gathered list.
        states = [rng_state()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            states = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, rng_state())
        return {"per_rank": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict.get("per_rank")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        states = getattr(self, "_to_restore", None)
        self._to_restore = None
        if not states:
            return
        if len(states) != trainer.world_size:
            log.warning("checkpoint has RNG states of %d ranks, this run has %d: not restoring them",
                        len(states), trainer.world_size)  # fmt: skip
            return
        set_rng_state(states[trainer.global_rank])

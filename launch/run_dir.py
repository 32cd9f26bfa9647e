"""What a run folder remembers between launches: where to resume from, its wandb run id, and the closing summary.

- Resume: an explicit ``ckpt_path``, else the folder's ``checkpoints/last.ckpt``; either is checked first (a cheap
  memory-mapped load), so a corrupt file stops with one message naming it instead of a traceback inside Lightning.
- wandb: the run id lives in ``<run>/wandb_run_id.txt``. A run that resumes from its own folder's checkpoint logs into
  the same wandb run; a new run (no checkpoint to resume, e.g. a deleted and re-created folder) gets a new id.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from omegaconf import DictConfig, open_dict

from jepa.checkpoint_io import CheckpointError, read_checkpoint

WANDB_ID_FILE = "wandb_run_id.txt"


def own_last_checkpoint(cfg: DictConfig) -> Path:
    return Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt"


def resume_path(cfg: DictConfig) -> str | None:
    """An explicit `ckpt_path`, else the run directory's last.ckpt when it exists (automatic resume); checked.

    Raises:
        FileNotFoundError: ``ckpt_path`` does not exist.
        CheckpointError: The checkpoint is not readable (the message names it and what to do).
    """
    if cfg.ckpt_path:
        path = Path(str(cfg.ckpt_path))
        read_checkpoint(path, mmap=True)
        return str(path)
    last = own_last_checkpoint(cfg)
    if not last.is_file():
        return None
    try:
        read_checkpoint(last, mmap=True)
    except CheckpointError as err:
        earlier = sorted(last.parent.glob("step*.ckpt"))
        alternative = f"ckpt_path={earlier[-1]}" if earlier else "another run_name for a fresh run"
        raise CheckpointError(f"cannot resume: {err}; delete it to start over, or resume with {alternative}") from None
    return str(last)


def is_global_zero() -> bool:
    """Rank 0 of the launch, from the launcher's environment (SLURM, torchrun or Lightning's own subprocesses)."""
    ranks = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")
    return all(int(os.environ.get(name, 0) or 0) == 0 for name in ranks)


def wandb_run_id(run_dir: str | Path, resuming: bool) -> str:
    """The run's wandb id: the recorded one when the run resumes its own checkpoint, else a new one (recorded)."""
    path = Path(run_dir) / WANDB_ID_FILE
    if resuming and path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = secrets.token_hex(8)
    if is_global_zero():  # only rank 0 logs to wandb; other ranks must not overwrite its id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
    return run_id


def set_wandb_ids(cfg: DictConfig, resuming: bool) -> None:
    """Give every WandbLogger without an explicit id the run's id (see `wandb_run_id`)."""
    for node in (cfg.get("logger") or {}).values():
        if node is not None and str(node.get("_target_", "")).endswith("WandbLogger") and not node.get("id"):
            with open_dict(node):
                node.id = wandb_run_id(cfg.paths.run_dir, resuming)


def summary(cfg: DictConfig, step: int, max_steps: int, loss: float | None, stopped_by: str | None) -> str:
    """The lines printed when a run ends: checkpoint, final loss, metrics, and the command to run next."""
    run_dir = Path(cfg.paths.run_dir)
    ckpt = own_last_checkpoint(cfg)
    state = f"stopped by {stopped_by} at step {step} of {max_steps}" if stopped_by else f"finished {step} steps"
    loss_text = "no loss logged" if loss is None else f"train/loss {loss:.4f}"
    if stopped_by:
        after = "run the same command again to resume (a requeued SLURM job does so by itself)"
    elif "ActionConditioned" in str(cfg.model.get("_target_", "")):
        after = f"python launch/eval_world_model.py checkpoint={ckpt}"
    elif "JointWorldModel" in str(cfg.model.get("_target_", "")):
        after = f"python launch/plan.py checkpoint={ckpt}"
    else:
        after = f"python launch/probe.py checkpoint={ckpt}"
    lines = [
        f"run {cfg.run_name}: {state}, {loss_text}",
        f"  checkpoint  {ckpt if ckpt.is_file() else 'none written'}",
        f"  metrics     {run_dir / 'csv' / 'metrics.csv'}  (loss curves: python launch/plot.py {run_dir})",
        f"  next        {after}",
    ]
    return "\n".join(lines)

"""Pretrain a V-JEPA encoder: `python launch/train.py +experiment=vjepa2_small [key=value ...]`.

Composes the Hydra config, builds the objects it names, and calls `Trainer.fit`. A run lives in
`outputs/<run_name>`; starting the same run again (or a requeued SLURM job) resumes from its
`checkpoints/last.ckpt`. Multi-GPU / multi-node: `trainer=ddp` or `trainer=fsdp`, launched by `launch/submit.py`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from jepa.checkpoint_io import CheckpointError
from jepa.data.pipeline import NoReadableSamplesError
from jepa.hardware import auto_compile, auto_precision
from jepa.tasks.callbacks import PreemptionCheckpoint
from jepa.tasks.guards import NonFiniteLossError
from launch.config_check import ConfigError, check_before_hydra, check_config
from launch.run_dir import own_last_checkpoint, resume_path, set_wandb_ids, summary

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
log = logging.getLogger("jepa.train")


def wandb_offline() -> bool:
    return not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE", "") != "online"


def register_resolvers() -> None:
    # bf16 on GPUs and on CPUs with native bf16, the compiled step on CUDA (jepa.hardware; overridable)
    OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
    OmegaConf.register_new_resolver("auto_compile", auto_compile, replace=True)
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)


def build_group(cfg: DictConfig | None) -> list:
    return [instantiate(node, _convert_="all") for node in (cfg or {}).values() if node is not None]


def cluster_plugins() -> list:
    """Under SLURM: Lightning's SLURM environment without its auto-requeue (`PreemptionCheckpoint` does that)."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def build_task(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of `cfg.model`, its modules compiled in place when `cfg.compile` is set."""
    task = instantiate(cfg.model, _convert_="all")
    if cfg.get("compile"):
        task.compile_modules(mode=cfg.get("compile_mode"), scope=cfg.get("compile_scope", "model"))
    return task


def train(cfg: DictConfig) -> L.Trainer:
    check_config(cfg)  # again here: tests and sweep jobs come in without the command-line check
    ckpt_path = resume_path(cfg)
    if ckpt_path is not None:
        log.info("resuming from %s (use another run_name for a fresh run)", ckpt_path)
    L.seed_everything(cfg.seed, workers=True)
    own = ckpt_path is not None and Path(ckpt_path).resolve().parent == own_last_checkpoint(cfg).resolve().parent
    set_wandb_ids(cfg, resuming=own)  # the same wandb run only when this run folder's own checkpoint goes on
    task = build_task(cfg)  # before the data: a model error must not wait for generated data
    datamodule = instantiate(cfg.data, _convert_="all")
    plugins = [*(instantiate(cfg.trainer.get("plugins")) or []), *cluster_plugins()]
    trainer = instantiate(
        cfg.trainer,
        callbacks=build_group(cfg.get("callbacks")),
        logger=build_group(cfg.get("logger")),
        plugins=plugins or None,
    )
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # torn down explicitly: gloo can abort a rank at interpreter exit otherwise (SLURM_LOCAL.md item 10)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return trainer


def use_sweep_dir(cfg: DictConfig) -> None:
    """In a multirun sweep every job gets its own stable folder (`<sweep dir>/<job num>`) as its run directory."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        cfg.paths.run_dir = HydraConfig.get().runtime.output_dir


def finish(cfg: DictConfig, trainer: L.Trainer) -> int:
    """Print the closing summary (rank 0) and return the exit status: 0, or 128 + signal for a signal stop.

    A stop that requeued the SLURM job exits 0 (the job goes on); SIGTERM / SIGINT without a requeue exit as
    shells expect from a process those signals stopped (143 / 130), so `train && probe` does not go on.
    """
    preemption = next((c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint)), None)
    signum = preemption.received if preemption is not None and preemption.saved_step is not None else None
    if trainer.is_global_zero:
        loss = trainer.callback_metrics.get("train/loss")
        stopped_by = signum.name if signum is not None else None
        max_steps = trainer.max_steps
        print(summary(cfg, trainer.global_step, max_steps, None if loss is None else float(loss), stopped_by))
    if signum in (signal.SIGTERM, signal.SIGINT) and not preemption.requeued:
        return 128 + signum
    return 0


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        use_sweep_dir(cfg)
        status = finish(cfg, train(cfg))
    except (FileNotFoundError, NoReadableSamplesError, CheckpointError, ConfigError) as err:  # user errors
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLossError as err:  # diverged: the message names the steps and what to change
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    if status == 128 + signal.SIGINT:
        # die by SIGINT, so that a calling shell script stops too (as Python does for an uncaught Ctrl-C)
        sys.stdout.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    if status:  # not on success: in a sweep, the next job runs in this process
        sys.exit(status)


register_resolvers()

if __name__ == "__main__":
    check_before_hydra("train")
    main()

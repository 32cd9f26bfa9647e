"""Pretrain a V-JEPA encoder: `python launch/train.py +experiment=vjepa2_small [key=value ...]`.

Composes the Hydra config, builds the objects it names, and calls `Trainer.fit`. A run lives in
`outputs/<run_name>`; starting the same run again (or a requeued SLURM job) resumes from its
`checkpoints/last.ckpt`. Multi-GPU / multi-node: `trainer=ddp` or `trainer=fsdp`, launched by `launch/submit.py`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf, open_dict

from jepa.data.pipeline import NoReadableSamplesError
from jepa.hardware import auto_compile, auto_precision

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


def resume_path(cfg: DictConfig) -> str | None:
    """An explicit `ckpt_path`, else the run directory's last.ckpt when it exists (automatic resume)."""
    if cfg.ckpt_path:
        return str(cfg.ckpt_path)
    last = Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s (use another run_name for a fresh run)", last)
        return str(last)
    return None


def build_group(cfg: DictConfig | None) -> list:
    return [instantiate(node, _convert_="all") for node in (cfg or {}).values() if node is not None]


def wandb_run_id(run_dir: str) -> str:
    """A wandb run id fixed by the run directory, so a resumed or requeued job logs into the same wandb run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def set_wandb_ids(cfg: DictConfig) -> None:
    for node in (cfg.get("logger") or {}).values():
        if node is not None and str(node.get("_target_", "")).endswith("WandbLogger") and not node.get("id"):
            with open_dict(node):
                node.id = wandb_run_id(cfg.paths.run_dir)


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
    L.seed_everything(cfg.seed, workers=True)
    set_wandb_ids(cfg)
    datamodule = instantiate(cfg.data, _convert_="all")
    task = build_task(cfg)
    plugins = [*(instantiate(cfg.trainer.get("plugins")) or []), *cluster_plugins()]
    trainer = instantiate(
        cfg.trainer,
        callbacks=build_group(cfg.get("callbacks")),
        logger=build_group(cfg.get("logger")),
        plugins=plugins or None,
    )
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_path(cfg))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # torn down explicitly: gloo can abort a rank at interpreter exit otherwise (SLURM_LOCAL.md item 10)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return trainer


def use_sweep_dir(cfg: DictConfig) -> None:
    """In a multirun sweep every job gets its own stable folder (`<sweep dir>/<job num>`) as its run directory."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        cfg.paths.run_dir = HydraConfig.get().runtime.output_dir


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        use_sweep_dir(cfg)
        train(cfg)
    except (FileNotFoundError, NoReadableSamplesError) as err:  # bad shards / checkpoint: a user error, not a crash
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


register_resolvers()

if __name__ == "__main__":
    main()

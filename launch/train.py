"""Pretrain a V-JEPA encoder: `python launch/train.py +experiment=vjepa2_small [key=value ...]`.

Composes the Hydra config, builds the objects it names, and calls `Trainer.fit`. A run lives in
`outputs/<run_name>`; starting the same run again resumes from its `checkpoints/last.ckpt`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
log = logging.getLogger("jepa.train")


def auto_precision() -> str:
    """bf16 autocast on a GPU that supports it, full fp32 elsewhere."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def wandb_offline() -> bool:
    return not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE", "") != "online"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
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


def train(cfg: DictConfig) -> L.Trainer:
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    task = instantiate(cfg.model, _convert_="all")
    trainer = instantiate(
        cfg.trainer, callbacks=build_group(cfg.get("callbacks")), logger=build_group(cfg.get("logger"))
    )
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_path(cfg))
    return trainer


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except FileNotFoundError as err:  # missing shards / checkpoint: a user error, not a crash
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


register_resolvers()

if __name__ == "__main__":
    main()

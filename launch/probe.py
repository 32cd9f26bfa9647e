"""Probe a frozen encoder: `python launch/probe.py checkpoint=PATH [label_key=direction num_classes=8] [...]`.

Loads the encoder (our Lightning checkpoint or a released V-JEPA 2 file), freezes it, trains the configured head
on labelled clips, evaluates top-1 / top-5 on the held-out split and writes `results.json` and `probe_head.pt` into
the run directory.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from jepa.checkpoints import describe_size, load_encoder
from jepa.models.vit import VisionTransformer
from launch.config_check import ConfigError, check_before_hydra, check_config
from launch.train import build_group, register_resolvers  # the sibling entry point's config helpers

log = logging.getLogger("jepa.probe")


def build_encoder(cfg: DictConfig) -> VisionTransformer:
    """The frozen encoder: from `checkpoint` (into the configured `encoder` when one is given, else rebuilt from
    the file), or the configured architecture at random initialisation when `checkpoint=null`."""
    configured = instantiate(cfg.encoder, _convert_="all") if cfg.get("encoder") else None
    if cfg.checkpoint is None:
        if configured is None:
            raise ValueError(
                "checkpoint=null probes a randomly initialised encoder and needs its architecture: "
                "add encoder=vit_small (or another configs/encoder entry)"
            )
        return configured.eval().requires_grad_(False)
    return load_encoder(cfg.checkpoint, which=cfg.which, encoder=configured, freeze=True)


def probe(cfg: DictConfig) -> dict[str, Any]:
    """Trains and evaluates one probe; returns (and writes) the results."""
    check_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    encoder = build_encoder(cfg)
    head = instantiate(cfg.probe_head, embed_dim=encoder.embed_dim, _convert_="all")
    task = instantiate(cfg.model, encoder=encoder, head=head, _convert_="all")
    datamodule = instantiate(cfg.probe_data, _convert_="all")
    trainer = instantiate(
        cfg.trainer, callbacks=build_group(cfg.get("callbacks")), logger=build_group(cfg.get("logger"))
    )
    trainer.fit(task, datamodule=datamodule)
    results = {
        **task.results,
        "label_key": cfg.label_key,
        "num_classes": cfg.num_classes,
        "checkpoint": None if cfg.checkpoint is None else str(cfg.checkpoint),
        "which": cfg.which,
        "encoder": describe_size(encoder.state_dict()),
        "head": type(head).__name__,
        "steps": trainer.global_step,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if trainer.is_global_zero:
        run_dir = Path(cfg.paths.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
        torch.save({"state_dict": head.state_dict(), "kwargs": head.init_kwargs}, run_dir / "probe_head.pt")
        log.info("top-1 %.2f%%, top-5 %.2f%% on %d held-out videos -> %s", results["top1"], results["top5"],
                 results["num_videos"], run_dir / "results.json")  # fmt: skip
    return results


@hydra.main(config_path="../configs", config_name="probe", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        probe(cfg)
    except (FileNotFoundError, ValueError, KeyError, ConfigError) as err:  # wrong path, other shape, no labels
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


register_resolvers()

if __name__ == "__main__":
    check_before_hydra("probe")
    main()

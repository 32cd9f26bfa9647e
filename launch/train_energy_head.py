"""Train a world model's planning-energy head: `python launch/train_energy_head.py [checkpoint=AC_CKPT] [...]`.

Encodes `num_windows` trajectory windows once with the checkpoint's frozen encoder, trains a `LatentEnergyHead` on
the cached latents (`jepa.tasks.energy`), and writes `energy_head.ckpt` and `log.json` to `output_dir`. Plan with it:
`python launch/plan.py checkpoint=AC_CKPT energy_head=OUTPUT_DIR/energy_head.ckpt`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from jepa.checkpoints import load_encoder, load_world_model
from jepa.tasks.energy import collect_latents, collect_predictions, train_energy_head

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def frozen_models(path: str) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """The frozen encoder and world model of an AC checkpoint (what the planner uses), or the encoder of a
    pretraining checkpoint and None."""
    try:
        world_model = load_world_model(path)
    except KeyError:  # not an AC checkpoint: a pretraining one
        return load_encoder(path), None
    return world_model.encoder, world_model


def run(cfg: DictConfig) -> dict:
    torch.manual_seed(cfg.seed)
    encoder, world_model = frozen_models(cfg.checkpoint)
    if cfg.prediction_coeff and world_model is None:
        raise ValueError(
            f"prediction_coeff={cfg.prediction_coeff} trains the head on a world model's rollouts, but "
            f"checkpoint={cfg.checkpoint} is a pretraining checkpoint: pass an AC checkpoint "
            "(+experiment=tworooms_ac's last.ckpt) or set prediction_coeff=0"
        )
    grid = encoder.img_size // encoder.patch_size
    head = instantiate(cfg.head, num_tokens=grid * grid, embed_dim=encoder.embed_dim)
    datamodule = instantiate(cfg.data, crop_size=encoder.img_size, _convert_="all")  # frames at the encoder's size
    datamodule.setup("fit")
    start = time.perf_counter()
    windows = collect_latents(encoder, datamodule.train_dataloader(), cfg.num_windows)
    predictions = None
    if cfg.prediction_coeff:  # the head also learns to read the world model's own rollouts
        predictions = collect_predictions(world_model, windows, list(cfg.prediction_starts), cfg.prediction_horizon)
    encode_seconds = time.perf_counter() - start
    rollouts = "" if predictions is None else f" and {tuple(predictions.shape)} world-model rollouts"
    print(
        f"cached {tuple(windows.latents.shape)} latents{rollouts} in {encode_seconds:.0f} s; training the head",
        flush=True,
    )
    if cfg.batch_by_scene and bool((windows.scenes < 0).any()):
        raise ValueError("batch_by_scene=true needs a `scene` id in every episode's json; set batch_by_scene=false")
    start = time.perf_counter()
    keys = ("steps", "batch_size", "lr", "weight_decay", "sim_coeff", "std_coeff", "cov_coeff", "seed")
    log = train_energy_head(
        head,
        windows.latents,
        **{k: cfg[k] for k in keys},
        scenes=windows.scenes if cfg.batch_by_scene else None,
        predictions=predictions,
        prediction_starts=list(cfg.prediction_starts),
        prediction_coeff=cfg.prediction_coeff,
    )
    train_seconds = time.perf_counter() - start
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "module_kwargs": {"energy_head": head.init_kwargs, "encoder": encoder.init_kwargs},
            "state_dict": {f"head.{k}": v for k, v in head.state_dict().items()},
            "checkpoint": str(cfg.checkpoint),
        },
        out / "energy_head.ckpt",
    )
    result = {"encode_seconds": encode_seconds, "train_seconds": train_seconds, "log": log}
    (out / "log.json").write_text(json.dumps(result, indent=2))
    last = log[-1]
    print(
        f"step {last['step']}: loss {last['loss']:.4f} (sim {last['sim']:.4f}, std {last['std']:.4f}, "
        f"cov {last['cov']:.4f}); {train_seconds:.0f} s. Wrote {out / 'energy_head.ckpt'}"
    )
    return result


@hydra.main(config_path="../configs", config_name="energy_head", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (FileNotFoundError, KeyError, ValueError) as err:  # wrong path / wrong checkpoint: user errors
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

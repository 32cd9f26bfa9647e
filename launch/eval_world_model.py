"""Offline evaluation of a world model, no robot needed:
`python launch/eval_world_model.py checkpoint=outputs/tworooms_ac/checkpoints/last.ckpt [data=... horizon=8]`.

On held-out trajectories it reports the latent prediction error per rollout step (1..H) of the model with the true
actions, against "repeat the last latent" and "the same model with shuffled actions"; it writes `errors.json` and
`errors.png` (error vs horizon) to `output_dir`. A useful world model is clearly below both baselines.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from jepa.checkpoints import load_world_model
from jepa.tasks.action import rollout_errors

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def plot(errors: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    steps = list(range(1, len(errors["model"]) + 1))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, style in (("model", "o-"), ("shuffled_actions", "s--"), ("repeat_last", "^:")):
        ax.plot(steps, errors[name], style, label=name.replace("_", " "))
    ax.set(xlabel="rollout step", ylabel="latent L1 error", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate(cfg: DictConfig) -> dict:
    world_model = load_world_model(cfg.checkpoint)
    # windows of horizon + 1 frames at the checkpoint's encoder size
    datamodule = instantiate(
        cfg.data, crop_size=world_model.encoder.img_size, frames_per_clip=cfg.horizon + 1, _convert_="all"
    )
    datamodule.setup("validate")
    errors = rollout_errors(world_model, datamodule.train_dataloader(), cfg.horizon, cfg.num_windows, cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": str(cfg.checkpoint), "frame_step": cfg.data.frame_step, **errors}
    (out / "errors.json").write_text(json.dumps(result, indent=2))
    plot(errors, out / "errors.png", f"{Path(cfg.checkpoint).name}, {errors['windows']} windows")
    print(f"{'step':>4} {'model':>8} {'shuffled':>9} {'repeat':>8}")
    for h, row in enumerate(
        zip(errors["model"], errors["shuffled_actions"], errors["repeat_last"], strict=True), start=1
    ):
        print(f"{h:>4} " + " ".join(f"{v:8.4f}" for v in row))
    print(f"wrote {out / 'errors.json'} and {out / 'errors.png'}")
    return result


@hydra.main(config_path="../configs", config_name="eval_world_model", version_base="1.3")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    try:
        evaluate(cfg)
    except (FileNotFoundError, KeyError, ValueError) as err:  # wrong path / not an AC checkpoint: user errors
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

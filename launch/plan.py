"""Latent MPC with a trained world model: `python launch/plan.py checkpoint=PATH [planner=mppi] [episodes=20]`.

Runs seeded episodes in the configured environment (Two Rooms by default): encode the goal image, plan with CEM or
MPPI on the world model's latents, execute the first planned action, observe, re-plan. Writes `results.json` (success
rate, final true distance, seconds per plan and per episode, one row per episode), an image strip per episode
(start | goal | reached) and, with `energy_landscape=true`, the energy over a grid of first actions. With
`energy_head=PATH` (`launch/train_energy_head.py`) the energy is the distance of the predicted latents' embeddings
to the goal's instead of the raw latent distance.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from jepa.checkpoints import load_energy_head, load_world_model
from jepa.planning.mpc import EpisodeResult, MPCAgent, run_episode

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b), replace=True)


def load_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PNG/JPEG file."""
    import matplotlib.image

    if not Path(path).is_file():
        raise FileNotFoundError(f"goal_image not found: {path}")
    image = matplotlib.image.imread(path)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return image[..., :3]


def save_strip(result: EpisodeResult, path: Path) -> None:
    """start | goal | reached, side by side, 4x nearest-neighbour upscaled."""
    import matplotlib.image

    gap = np.full((result.start_image.shape[0], 2, 3), 255, np.uint8)
    strip = np.concatenate([result.start_image, gap, result.goal_image, gap, result.final_image], axis=1)
    matplotlib.image.imsave(path, strip.repeat(4, 0).repeat(4, 1))


def save_landscape(agent: MPCAgent, env, path: Path, extent: float, resolution: int = 41) -> None:
    """The energy of plans whose first action varies over a grid (the rest as planned), chosen action marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = agent.plan(env.observation(), env.state(), torch.Generator().manual_seed(0))
    grid = torch.linspace(-extent, extent, resolution)
    firsts = torch.cartesian_prod(grid, grid)  # (G*G, 2) as (x, y)
    plans = result.actions.unsqueeze(0).repeat(firsts.size(0), 1, 1)
    plans[:, 0] = agent.planner.bounds.project(firsts)
    cost = agent.cost(env.observation(), env.state())
    energy = torch.cat([cost(chunk) for chunk in plans.split(256)]).view(resolution, resolution)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    image = ax.imshow(energy.T, origin="lower", extent=(-extent, extent, -extent, extent), cmap="viridis")
    ax.plot(*result.actions[0].tolist(), "r*", markersize=12, label="chosen")
    ax.set(xlabel="first action x", ylabel="first action y", title="energy of the first action")
    ax.legend(loc="upper right")
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def landscape_extent(bounds) -> float:
    """Half-width of the energy landscape's grid: the action bounds (norm limit, else per-dimension), else 3."""
    if bounds.max_norm is not None:
        return float(bounds.max_norm)
    limits = [abs(float(v)) for bound in (bounds.low, bounds.high) if bound is not None for v in np.ravel(bound)]
    return max(limits) if limits else 3.0


def plan(cfg: DictConfig) -> dict:
    world_model = load_world_model(cfg.checkpoint).to(cfg.device)
    planner = instantiate(cfg.planner, _convert_="all")
    action_dim = world_model.predictor.action_dim
    if planner.action_dim != action_dim:
        raise ValueError(f"planner.action_dim={planner.action_dim} but the world model takes {action_dim}-D actions")
    env = instantiate(cfg.env)
    energy_head = load_energy_head(cfg.energy_head) if cfg.energy_head else None
    agent = MPCAgent(
        world_model, planner, world_model.encoder.img_size, device=cfg.device, energy_head=energy_head, **cfg.agent
    )
    goal_file = load_image(cfg.goal_image) if cfg.goal_image else None  # replaces every episode's own goal
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.energy_landscape:
        env.reset(cfg.seed)
        agent.set_goal(env.goal_image() if goal_file is None else goal_file)
        save_landscape(agent, env, out / "energy_landscape.png", extent=landscape_extent(planner.bounds))
    rows = []
    for i in tqdm(range(cfg.episodes), desc=f"planning ({type(planner).__name__})", unit="episode"):
        result = run_episode(agent, env, cfg.seed + i, cfg.max_env_steps, goal_image=goal_file)
        rows.append({"seed": cfg.seed + i, **result.summary()})
        if cfg.save_strips:
            save_strip(result, out / f"episode{i:03d}.png")
    summary = {
        "checkpoint": str(cfg.checkpoint),
        "energy_head": cfg.energy_head,
        "planner": OmegaConf.to_container(cfg.planner),
        "agent": OmegaConf.to_container(cfg.agent),
        "episodes": len(rows),
        "goal_image": cfg.goal_image,
        "seconds_per_episode": float(np.mean([r["seconds"] for r in rows])),
        "seconds_per_plan": float(np.mean([r["seconds_per_plan"] for r in rows])),
    }
    if goal_file is None:
        summary["success_rate"] = float(np.mean([r["success"] for r in rows]))
        summary["mean_final_distance"] = float(np.mean([r["final_distance"] for r in rows]))
    else:  # the environment's own goal is not the file's: its distance says nothing
        for row in rows:
            row.pop("success"), row.pop("final_distance")
    summary["per_episode"] = rows
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    for key in ("success_rate", "mean_final_distance", "seconds_per_episode", "seconds_per_plan"):
        if key in summary:
            print(f"{key}: {summary[key]:.4g}")
    print(f"wrote {out / 'results.json'}")
    return summary


@hydra.main(config_path="../configs", config_name="plan", version_base="1.3")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    try:
        plan(cfg)
    except (FileNotFoundError, KeyError, ValueError) as err:  # wrong path / not an AC checkpoint: user errors
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

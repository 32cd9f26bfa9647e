"""Latent MPC with a trained world model: `python launch/plan.py [planner=mppi] [env.fixed_layout=true] [...]`.

Runs seeded episodes in the configured environment (Two Rooms random walls by default): encode the goal image,
plan on the world model's latents (CEM, MPPI or gradient descent, configured from the environment's action space),
execute the first planned action(s), observe, re-plan. `policy=random` and `policy=oracle` run the baselines through
the same loop. Writes `results.json` (success rate with its 95% interval, final true distance, seconds per plan and
per episode, one row per episode) to the run's folder, optionally an image strip per episode (start | goal |
reached) and the energy over a grid of first actions. A multirun (`-m planner=cem,mppi,gradient`) makes a table
with `python benchmarks/planning_table.py <sweep dir>`.
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

from jepa.checkpoints import load_world_model
from jepa.planning.evaluation import run_episodes, success_summary
from jepa.planning.mpc import EpisodeResult, MPCAgent, OraclePolicy, RandomPolicy

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
POLICIES = ("planner", "random", "oracle")


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


def save_landscape(agent: MPCAgent, env, path: Path, resolution: int = 41) -> None:
    """The energy of plans whose first action varies over a grid (the rest as planned), chosen action marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bounds = agent.planner.bounds
    extent = bounds.reach() or 3.0
    result = agent.plan(env.observation(), env.state(), torch.Generator().manual_seed(0))
    grid = torch.linspace(-extent, extent, resolution)
    firsts = torch.cartesian_prod(grid, grid)  # (G*G, 2) as (x, y)
    plans = result.actions.unsqueeze(0).repeat(firsts.size(0), 1, 1)
    plans[:, 0] = bounds.project(firsts)
    cost = agent.cost(env.observation(), env.state())
    with torch.no_grad():
        energy = torch.cat([cost(chunk.to(agent.device)).cpu() for chunk in plans.split(256)])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    image = ax.imshow(energy.view(resolution, resolution).T, origin="lower", extent=(-extent, extent) * 2)
    ax.plot(*result.actions[0].tolist(), "r*", markersize=12, label="chosen")
    ax.set(xlabel="first action x", ylabel="first action y", title="energy of the first action")
    ax.legend(loc="upper right")
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_policy(cfg: DictConfig):
    """The MPC agent on the checkpoint's world model, or a baseline policy."""
    if cfg.policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {cfg.policy!r}")
    if cfg.policy == "random":
        return RandomPolicy()
    if cfg.policy == "oracle":
        return OraclePolicy()
    world_model = load_world_model(cfg.checkpoint).to(cfg.device)
    planner = instantiate(cfg.planner, _convert_="all")
    energy = instantiate(cfg.energy, _convert_="all")
    return MPCAgent(world_model, planner, energy, device=cfg.device, **cfg.agent)


def summarize(cfg: DictConfig, rows: list[dict], goal_file: bool) -> dict:
    planner = cfg.policy == "planner"
    summary = {
        "policy": cfg.policy,
        "checkpoint": str(cfg.checkpoint) if planner else None,
        "planner": OmegaConf.to_container(cfg.planner, resolve=True) if planner else None,
        "energy": OmegaConf.to_container(cfg.energy, resolve=True) if planner else None,
        "agent": OmegaConf.to_container(cfg.agent, resolve=True),
        "env": OmegaConf.to_container(cfg.env, resolve=True),
        "max_env_steps": cfg.max_env_steps,
        "goal_image": cfg.goal_image,
        **success_summary(rows),
    }
    if goal_file:  # the environment's own goal is not the file's: its success and distance say nothing
        for key in ("successes", "success_rate", "success_interval_95", "mean_final_distance"):
            summary.pop(key)
        for row in rows:
            row.pop("success"), row.pop("final_distance")
    summary["per_episode"] = rows
    return summary


def plan(cfg: DictConfig) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    policy = build_policy(cfg)
    env = instantiate(cfg.env)
    goal_file = load_image(cfg.goal_image) if cfg.goal_image else None  # replaces every episode's own goal
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.energy_landscape and isinstance(policy, MPCAgent):
        env.reset(cfg.seed)
        policy.begin(env, cfg.seed, goal_file)
        save_landscape(policy, env, out / "energy_landscape.png")
    label = type(policy.planner).__name__ if isinstance(policy, MPCAgent) else cfg.policy
    progress = tqdm(total=cfg.episodes, desc=f"planning ({label})", unit="episode")

    def after_episode(seed: int, result: EpisodeResult, rows: list[dict]) -> None:
        progress.update()
        if goal_file is None:
            progress.set_postfix(success=f"{sum(r['success'] for r in rows)}/{len(rows)}")
        if cfg.save_strips:
            save_strip(result, out / f"episode{seed - cfg.seed:03d}.png")

    seeds = range(cfg.seed, cfg.seed + cfg.episodes)
    rows = run_episodes(policy, env, seeds, cfg.max_env_steps, goal_file, after_episode)
    progress.close()
    summary = summarize(cfg, rows, goal_file is not None)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    if "success_rate" in summary:
        low, high = summary["success_interval_95"]
        print(
            f"success_rate: {summary['success_rate']:.3f} ({summary['successes']}/{len(rows)}, 95% {low:.2f}-{high:.2f})"
        )
        print(f"mean_final_distance: {summary['mean_final_distance']:.4g}")
    print(
        f"seconds_per_episode: {summary['seconds_per_episode']:.4g}, seconds_per_plan: {summary['seconds_per_plan']:.4g}"
    )
    print(f"wrote {out / 'results.json'}")
    return summary


@hydra.main(config_path="../configs", config_name="plan", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        plan(cfg)
    except (FileNotFoundError, KeyError, ValueError) as err:  # wrong path / wrong checkpoint kind: user errors
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Planning benchmark: success rate, final distance and time per episode, Two Rooms or PointMaze.

python benchmarks/planning.py --checkpoint outputs/tworooms_ac/checkpoints/last.ckpt --episodes 20
python benchmarks/planning.py --env pointmaze --checkpoint outputs/pointmaze_ac/checkpoints/last.ckpt --episodes 20

Two Rooms (eb_jepa's protocol), fixed wall (x 32, door y 18) and random walls: the learned world model with CEM and
with MPPI (latent MPC toward the goal image, `jepa.planning`), random actions, and the scripted oracle (`DoorOracle`,
true positions). 200 environment steps per episode, success = final distance < 4.5 px.

PointMaze (`--env pointmaze`, optional install): the same policies on `PointMaze_<maze>-v3` seen from above, goal
given only as an image; the oracle is `MazeOracle` (a breadth-first path over the true cells and a PD controller on
the true state); random = uniform forces; 300 environment steps (the environment's own limit), success = within
0.45 maze units (its own test).

Seeds 0..N-1, the same episodes for every policy. Prints a markdown table for BENCHMARKS.md and writes one JSON line
per (layout, policy), with each episode's outcome.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from jepa.checkpoints import load_energy_head, load_world_model
from jepa.envs.point_maze import MazeOracle
from jepa.envs.two_rooms import EPISODE_STEPS, MAX_STEP, DoorOracle
from jepa.planning.adapters import PointMazeAdapter, TwoRoomsAdapter
from jepa.planning.mpc import MPCAgent, run_episode
from jepa.planning.planners import ActionBounds, CEMPlanner, MPPIPlanner


def scripted_episode(env: TwoRoomsAdapter | PointMazeAdapter, seed: int, policy: str, steps: int) -> dict:
    """One episode of the oracle or of random actions (Two Rooms: uniform direction and length up to the step
    limit; PointMaze: uniform forces)."""
    env.reset(seed)
    rng = np.random.default_rng(seed)
    pointmaze = isinstance(env, PointMazeAdapter)
    if policy == "oracle":
        oracle = MazeOracle(env.env.maze) if pointmaze else DoorOracle()
    start = time.perf_counter()
    for _ in range(steps):
        if policy == "oracle":
            action = oracle.act(env.info)
        elif pointmaze:
            action = rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        else:
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0, MAX_STEP)
            action = np.array([np.cos(angle), np.sin(angle)], np.float32) * length
        env.step(action)
    return {
        "seed": seed,
        "success": env.success(),
        "final_distance": env.distance(),
        "seconds": time.perf_counter() - start,
    }


def planners(args: argparse.Namespace) -> dict:
    if args.env == "pointmaze":  # a planned action sums action_repeat forces in [-1, 1]
        bounds = ActionBounds(low=-float(args.action_repeat), high=float(args.action_repeat))
    else:  # a planned action sums action_repeat displacements of norm <= 2.45
        bounds = ActionBounds(max_norm=args.action_repeat * args.max_step)
    return {
        "cem": CEMPlanner(
            args.horizon,
            2,
            args.samples,
            args.elites,
            args.iterations,
            init_std=args.std,
            min_std=0.3,
            bounds=bounds,
            straight_lines=args.straight_lines,
        ),
        "mppi": MPPIPlanner(
            args.horizon,
            2,
            args.samples,
            args.iterations,
            noise_std=args.std,
            temperature=args.temperature,
            noise_decay=0.7,
            bounds=bounds,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--env", default="tworooms", choices=("tworooms", "pointmaze"))
    parser.add_argument("--maze", default="UMaze", help="PointMaze maze: UMaze, Medium or Large")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0, help="episodes use seeds first-seed .. + episodes - 1")
    parser.add_argument("--max-steps", type=int, default=None, help="environment steps (Two Rooms 200, PointMaze 300)")
    parser.add_argument("--layouts", default="fixed,random", help="Two Rooms walls: fixed and/or random")
    parser.add_argument("--policies", default="cem,mppi,random,oracle")
    parser.add_argument("--horizon", type=int, default=4)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--elites", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--std", type=float, default=3.0)
    parser.add_argument(
        "--straight-lines",
        type=int,
        default=None,
        help="CEM: also score constant full-speed plans in this many directions (and standing still) first "
        "(default: Two Rooms 16, PointMaze 0; rows in BENCHMARKS.md before session 10 ran with 0)",
    )
    parser.add_argument("--temperature", type=float, default=0.002)
    parser.add_argument(
        "--action-repeat",
        type=int,
        default=None,
        help="environment steps per planned action: the world model's frame_step (Two Rooms 4, PointMaze 10)",
    )
    parser.add_argument(
        "--max-step",
        type=float,
        default=MAX_STEP,
        help="Two Rooms: the planner's norm limit per environment step (the environment clips at 2.45 px)",
    )
    parser.add_argument("--reduce", default="sum", choices=("sum", "final"))
    parser.add_argument(
        "--energy-head", default=None, help="a `launch/train_energy_head.py` checkpoint: plan on its embeddings"
    )
    parser.add_argument(
        "--latent-weight", type=float, default=0.0, help="with --energy-head: add this times the raw latent energy"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="where the world model and energy run (cpu, cuda)")
    parser.add_argument("--json", default=None, help="append the JSON lines here")
    args = parser.parse_args()
    pointmaze = args.env == "pointmaze"
    if args.action_repeat is None:
        args.action_repeat = 10 if pointmaze else 4
    if args.straight_lines is None:
        args.straight_lines = 0 if pointmaze else 16
    if args.max_steps is None:
        args.max_steps = 300 if pointmaze else EPISODE_STEPS
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        # fp32 everywhere, as on the CPU: cuDNN's default TF32 convolutions would change the patch embedding
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    world_model = load_world_model(args.checkpoint).to(args.device)
    energy_head = load_energy_head(args.energy_head) if args.energy_head else None
    learned = planners(args)
    rows = []
    for layout in [args.maze] if pointmaze else args.layouts.split(","):
        env = PointMazeAdapter(args.maze) if pointmaze else TwoRoomsAdapter(fixed_layout=layout == "fixed")
        for policy in args.policies.split(","):
            episodes = []
            for seed in range(args.first_seed, args.first_seed + args.episodes):
                if policy in learned:
                    agent = MPCAgent(
                        world_model,
                        learned[policy],
                        world_model.encoder.img_size,
                        args.action_repeat,
                        max_env_action_norm=None if pointmaze else args.max_step,
                        reduce=args.reduce,
                        energy_head=energy_head,
                        latent_weight=args.latent_weight,
                        device=args.device,
                    )
                    result = run_episode(agent, env, seed, args.max_steps)
                    episodes.append({"seed": seed, **result.summary()})
                else:
                    episodes.append(scripted_episode(env, seed, policy, args.max_steps))
                if policy in learned:  # a learned episode takes most of a minute on a CPU: show progress
                    e = episodes[-1]
                    print(
                        f"{layout} {policy} seed {seed}: {'success' if e['success'] else 'miss'}, "
                        f"final distance {e['final_distance']:.2f}, {e['seconds']:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            row = {
                "layout": layout,
                "policy": policy,
                "episodes": len(episodes),
                "success_rate": float(np.mean([e["success"] for e in episodes])),
                "mean_final_distance": float(np.mean([e["final_distance"] for e in episodes])),
                "seconds_per_episode": float(np.mean([e["seconds"] for e in episodes])),
                "seconds_per_plan": float(np.mean([e.get("seconds_per_plan", 0.0) for e in episodes])),
                "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
                "per_episode": [
                    {"seed": e["seed"], "success": bool(e["success"]), "final_distance": round(e["final_distance"], 3)}
                    for e in episodes
                ],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    where, unit = ("maze", "maze units") if pointmaze else ("layout", "px")
    print(f"\n| {where} | policy | success | mean final distance ({unit}) | s / episode | s / plan |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['policy']} | {r['success_rate']:.0%} | {r['mean_final_distance']:.{2 if pointmaze else 1}f} | "
            f"{r['seconds_per_episode']:.1f} | {r['seconds_per_plan']:.2f} |"
        )


if __name__ == "__main__":
    main()

"""Two Rooms planning benchmark (eb_jepa's protocol): success rate, final distance and time per episode.

python benchmarks/planning.py --checkpoint outputs/tworooms_ac/checkpoints/last.ckpt --episodes 20

For the fixed wall (x 32, door y 18) and random walls: the learned world model with CEM and with MPPI (latent MPC
toward the goal image, `jepa.planning`), random actions, and the scripted oracle (`DoorOracle`, true positions).
200 environment steps per episode, success = final distance < 4.5 px, seeds 0..N-1 (the same episodes for every
policy). Prints a markdown table for BENCHMARKS.md and writes one JSON line per (layout, policy).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from jepa.checkpoints import load_energy_head, load_world_model
from jepa.envs.two_rooms import EPISODE_STEPS, MAX_STEP, DoorOracle
from jepa.planning.adapters import TwoRoomsAdapter
from jepa.planning.mpc import MPCAgent, run_episode
from jepa.planning.planners import ActionBounds, CEMPlanner, MPPIPlanner


def scripted_episode(env: TwoRoomsAdapter, seed: int, policy: str) -> dict:
    env.reset(seed)
    rng, oracle = np.random.default_rng(seed), DoorOracle()
    start = time.perf_counter()
    for _ in range(EPISODE_STEPS):
        if policy == "oracle":
            action = oracle.act(env.info)
        else:  # uniform direction, uniform length up to the step limit
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0, MAX_STEP)
            action = np.array([np.cos(angle), np.sin(angle)], np.float32) * length
        env.step(action)
    return {"success": env.success(), "final_distance": env.distance(), "seconds": time.perf_counter() - start}


def planners(args: argparse.Namespace) -> dict:
    bounds = ActionBounds(max_norm=args.action_repeat * MAX_STEP)
    return {
        "cem": CEMPlanner(
            args.horizon, 2, args.samples, args.elites, args.iterations, init_std=args.std, min_std=0.3, bounds=bounds
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
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--layouts", default="fixed,random")
    parser.add_argument("--policies", default="cem,mppi,random,oracle")
    parser.add_argument("--horizon", type=int, default=4)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--elites", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--std", type=float, default=3.0)
    parser.add_argument("--temperature", type=float, default=0.002)
    parser.add_argument("--action-repeat", type=int, default=4, help="environment steps per planned action")
    parser.add_argument("--reduce", default="sum", choices=("sum", "final"))
    parser.add_argument(
        "--energy-head", default=None, help="a `launch/train_energy_head.py` checkpoint: plan on its embeddings"
    )
    parser.add_argument(
        "--latent-weight", type=float, default=0.0, help="with --energy-head: add this times the raw latent energy"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", default=None, help="append the JSON lines here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    world_model = load_world_model(args.checkpoint)
    energy_head = load_energy_head(args.energy_head) if args.energy_head else None
    learned = planners(args)
    rows = []
    for layout in args.layouts.split(","):
        env = TwoRoomsAdapter(fixed_layout=layout == "fixed")
        for policy in args.policies.split(","):
            episodes = []
            for seed in range(args.episodes):
                if policy in learned:
                    agent = MPCAgent(
                        world_model,
                        learned[policy],
                        world_model.encoder.img_size,
                        args.action_repeat,
                        max_env_action_norm=MAX_STEP,
                        reduce=args.reduce,
                        energy_head=energy_head,
                        latent_weight=args.latent_weight,
                    )
                    result = run_episode(agent, env, seed, EPISODE_STEPS)
                    episodes.append({**result.summary()})
                else:
                    episodes.append(scripted_episode(env, seed, policy))
            row = {
                "layout": layout,
                "policy": policy,
                "episodes": len(episodes),
                "success_rate": float(np.mean([e["success"] for e in episodes])),
                "mean_final_distance": float(np.mean([e["final_distance"] for e in episodes])),
                "seconds_per_episode": float(np.mean([e["seconds"] for e in episodes])),
                "seconds_per_plan": float(np.mean([e.get("seconds_per_plan", 0.0) for e in episodes])),
                "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print("\n| layout | policy | success | mean final distance (px) | s / episode | s / plan |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['policy']} | {r['success_rate']:.0%} | {r['mean_final_distance']:.1f} | "
            f"{r['seconds_per_episode']:.1f} | {r['seconds_per_plan']:.2f} |"
        )


if __name__ == "__main__":
    main()

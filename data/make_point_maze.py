"""Random-action PointMaze trajectories (top-down 64x64 frames, 2-D forces, (x, y, vx, vy) states) as shards.

python data/make_point_maze.py --maze UMaze --out data/point_maze    # -> data/point_maze/{train,val}/shard-*.tar
python data/make_point_maze.py --train 1000 --steps 500 --frame-step 10 --out data/point_maze_k10   # +experiment=pointmaze_wm

Needs `pip install -e .[pointmaze]` (and MUJOCO_GL=egl with libegl1 libegl-mesa0 when headless). Episodes are
written as .npz files (data/point_maze/episodes/{train,val}) and converted by the trajectory converter
(`data/make_trajectories.py`), so they are in exactly the format your own robot data would be.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from tqdm import tqdm

from jepa.data.trajectory_convert import convert_episodes
from jepa.envs.point_maze import TopDownPointMaze, random_episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maze", default="UMaze", choices=("UMaze", "Medium", "Large"))
    parser.add_argument("--out", default="data/point_maze")
    parser.add_argument("--train", type=int, default=256, help="training episodes")
    parser.add_argument("--val", type=int, default=32, help="held-out episodes")
    parser.add_argument("--steps", type=int, default=100, help="control steps per episode")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument(
        "--frame-step",
        type=int,
        default=1,
        help="record one frame per this many control steps, one random force per block, its forces summed into the "
        "block's action (for world models that plan with agent.action_repeat equal to it; about this many times "
        "faster to make)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lossy",
        action="store_true",
        help="H.264 yuv420p frames instead of exact ones (smaller; but the planner sees exact renders, and lossy "
        "frames shift the small ball's latents, BENCHMARKS.md)",
    )
    args = parser.parse_args()
    env = TopDownPointMaze(args.maze, args.size)
    rng = np.random.default_rng(args.seed)
    for split, count in (("train", args.train), ("val", args.val)):
        episodes = os.path.join(args.out, "episodes", split)
        os.makedirs(episodes, exist_ok=True)
        for i in tqdm(range(count), desc=f"{args.maze} {split} episodes", unit="ep"):
            np.savez(
                os.path.join(episodes, f"ep{i:06d}.npz"),
                **random_episode(env, rng, args.steps, frame_step=args.frame_step),
            )
        summary = convert_episodes(
            episodes, os.path.join(args.out, split), episodes_per_shard=64, progress=False, lossless=not args.lossy
        )
        print(
            f"{split}: {summary['episodes']} episodes, {summary['frames']} frames -> {os.path.join(args.out, split)}"
        )


if __name__ == "__main__":
    main()

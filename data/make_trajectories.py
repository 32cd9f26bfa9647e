"""Convert a folder of robot episodes into trajectory shards for action-conditioned training.

python data/make_trajectories.py --input EPISODES_DIR --out data/my_robot [--fps 10 --episodes-per-shard 64]

Each episode is one `.npz` or `.h5`/`.hdf5` file with arrays `frames` (T, H, W, 3) uint8, `actions` (T or T-1, A)
and `states` (T, S); see jepa/data/trajectories.py for the shard format. Train with
`python launch/train.py +experiment=tworooms_ac data=trajectories data.shards='data/my_robot/shard-*.tar'
ac_predictor.action_dim=A ac_predictor.state_dim=S`.
"""

from __future__ import annotations

import argparse
import sys
import time

from jepa.data.trajectory_convert import convert_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--input", required=True, help="folder with one .npz/.h5 file per episode (searched recursively)"
    )
    parser.add_argument("--out", required=True, help="output folder for shard-%%06d.tar and manifest.json")
    parser.add_argument("--fps", type=int, default=10, help="control frequency of the episodes")
    parser.add_argument("--episodes-per-shard", type=int, default=64)
    parser.add_argument(
        "--lossless", action="store_true", help="exact frames (for rendered simulator frames; larger files)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        summary = convert_episodes(args.input, args.out, args.episodes_per_shard, args.fps, lossless=args.lossless)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"wrote {summary['episodes']} episodes ({summary['frames']} frames, action_dim {summary['action_dim']}, "
        f"state_dim {summary['state_dim']}) in {len(summary['shards'])} shards to {args.out} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    for path, reason in summary["skipped"].items():
        print(f"skipped {path}: {reason}")


if __name__ == "__main__":
    main()

"""Generate the embedded synthetic video dataset (moving shapes) as webdataset shards.

python data/make_synthetic.py --out data/synthetic_videos --num-clips 512 --frames 16 --size 64
"""

from __future__ import annotations

import argparse
import time

from jepa.data.synthetic import make_synthetic_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder for shard-%%06d.tar and manifest.json")
    parser.add_argument("--num-clips", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (even)")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--clips-per-shard", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=4, help="shapes used: square, circle, triangle, cross")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    paths = make_synthetic_shards(
        args.out,
        num_clips=args.num_clips,
        frames=args.frames,
        size=args.size,
        fps=args.fps,
        clips_per_shard=args.clips_per_shard,
        num_classes=args.num_classes,
        seed=args.seed,
    )
    print(f"wrote {args.num_clips} clips in {len(paths)} shards to {args.out} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

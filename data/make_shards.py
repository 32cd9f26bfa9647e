"""Turn folders, globs or CSV lists of videos (and images) into webdataset shards of fast-decoding mp4 clips.

python data/make_shards.py /data/kinetics/train --out /data/k400-shards --label-from-folder --workers 16
python data/make_shards.py train.csv --out /data/ssv2-shards --clip-seconds 10     # `path label` per line

Re-encodes to --fps (default 8) at a --short-side of 256 with a keyframe every 8 frames (--gop) at --crf 26, so a
random 16-frame clip decodes in about 7 ms. Running the same command again resumes: complete shards are kept. Train on the result with
`python launch/train.py +experiment=vjepa2_small data.shards=/data/k400-shards/manifest.json`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jepa.data.builder import build_shards, summary
from jepa.data.transcode import EncodeSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="folders (recursive), globs, files, or .csv/.txt lists")
    parser.add_argument("--out", required=True, help="output folder for shard-%%06d.tar and manifest.json")
    parser.add_argument("--fps", type=float, default=8.0, help="output frame rate (sample at frame_step 1-2)")
    parser.add_argument("--short-side", type=int, default=256, help="output short side in pixels (no upscaling)")
    parser.add_argument("--clip-seconds", type=float, default=None, help="split videos into clips this long")
    parser.add_argument("--min-seconds", type=float, default=0.0, help="drop clips (and videos) shorter than this")
    parser.add_argument("--gop", type=int, default=8, help="keyframe interval in frames")
    parser.add_argument("--crf", type=int, default=26, help="x264 quality (lower = larger, closer to the source)")
    parser.add_argument("--files-per-shard", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="transcoding processes (default: one per CPU)")
    parser.add_argument("--label-from-folder", action="store_true", help="label = index of the class folder")
    parser.add_argument("--overwrite", action="store_true", help="delete a previous build in --out first")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    settings = EncodeSettings(
        fps=args.fps,
        short_side=args.short_side,
        clip_seconds=args.clip_seconds,
        min_seconds=args.min_seconds,
        gop=args.gop,
        crf=args.crf,
    )
    try:
        manifest = build_shards(
            args.inputs,
            args.out,
            settings,
            files_per_shard=args.files_per_shard,
            workers=args.workers,
            label_from_folder=args.label_from_folder,
            overwrite=args.overwrite,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(summary(manifest, args.out))
    if manifest["num_samples"] == 0:
        print("error: no input could be read; see the skipped files above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

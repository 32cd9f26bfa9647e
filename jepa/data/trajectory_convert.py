"""Convert a folder of recorded episodes (npz / hdf5, one per episode) into trajectory shards
(`jepa.data.trajectory_shards` format); the library side of `data/make_trajectories.py`."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm

from jepa.data.shards import write_shards
from jepa.data.trajectory_shards import MANIFEST, read_episode, trajectory_sample


def convert_episodes(
    input_dir: str,
    out_dir: str,
    episodes_per_shard: int = 64,
    fps: int = 10,
    progress: bool = True,
    lossless: bool = False,
) -> dict[str, Any]:
    """Converts a folder of episode files (npz / hdf5, one per episode) into trajectory shards.

    Args:
        input_dir: folder searched (recursively) for `*.npz`, `*.h5`, `*.hdf5`.
        out_dir: output folder for `shard-%06d.tar` and `manifest.json`.
        episodes_per_shard: samples per tar.
        fps: control frequency recorded in the samples.
        progress: tqdm bar.
        lossless: store the frames exactly (`encode_mp4(lossless=True)`; larger files: PointMaze's 256 episodes take 8.3 MB instead of 4.8 MB): for rendered
            simulator frames that a planner will later see uncompressed.

    Returns:
        Summary: `episodes`, `frames`, `shards` (paths), `action_dim`, `state_dim`, `skipped` ({file: reason}).
    """
    files = sorted(
        f
        for ext in ("npz", "h5", "hdf5")
        for f in glob.glob(os.path.join(input_dir, "**", f"*.{ext}"), recursive=True)
    )
    if not files:
        raise FileNotFoundError(f"no .npz/.h5/.hdf5 episode files under {input_dir}")
    summary: dict[str, Any] = {"episodes": 0, "frames": 0, "action_dim": None, "state_dim": None, "skipped": {}}

    def samples() -> Iterator[dict[str, Any]]:
        for index, path in enumerate(tqdm(files, desc="episodes", unit="ep", disable=not progress)):
            try:
                ep = read_episode(path)
                sample = trajectory_sample(
                    f"ep{index:07d}", **ep, fps=fps, lossless=lossless, source=os.path.relpath(path, input_dir)
                )
            except (ValueError, OSError) as exn:
                summary["skipped"][path] = str(exn)
                continue
            info = sample["json"]
            for name in ("action_dim", "state_dim"):
                if summary[name] not in (None, info[name]):
                    summary["skipped"][path] = f"{name} {info[name]} differs from the first episode's {summary[name]}"
                    break
                summary[name] = info[name]
            else:
                summary["episodes"] += 1
                summary["frames"] += info["n_frames"]
                yield sample

    summary["shards"] = write_shards(samples(), os.path.join(out_dir, "shard-%06d.tar"), episodes_per_shard)
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump({k: v for k, v in summary.items() if k != "shards"}, f, indent=2)
    return summary

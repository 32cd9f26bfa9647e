"""Recorders of the embedded environments: Two Rooms random walks written as trajectory shards
(`jepa.data.trajectory_shards` format), and the DataModule that trains on them (`configs/data/tworooms.yaml`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from jepa.data.shards import write_shards
from jepa.data.trajectories import TrajectoryDataModule
from jepa.data.trajectory_shards import MANIFEST, trajectory_sample
from jepa.envs.random_walk import crossed_door, random_walk
from jepa.envs.two_rooms import Layout, sample_layout


def make_two_rooms_shards(
    out_dir: str,
    num_train: int = 256,
    num_val: int = 32,
    steps: int = 48,
    fixed_layout: bool = False,
    episodes_per_shard: int = 64,
    seed: int = 0,
    progress: bool = True,
    episodes_per_layout: int = 1,
    lossless: bool = False,
    speed_range: tuple[float, float] | None = None,
    bump_fraction: float = 0.0,
) -> dict[str, list[str]]:
    """Generates random-walk Two Rooms trajectories into `out_dir/{train,val}/shard-*.tar` (manifest written last).

    Frames are 64x64 (the env's 65x65 minus its last row/column), actions are 2-D displacements in px, states the
    (x, y) position in px. Each episode's json holds its `layout` and a `scene` id shared by the episodes of one
    layout: with `episodes_per_layout` > 1 consecutive episodes walk in the same random layout (what the planning
    energy head trains on, batched by scene). `lossless` stores the frames exactly (`encode_mp4`). `speed_range`
    and `bump_fraction` go to `random_walk` (walks at up to the planner's speed, walks into the wall).
    Returns `{"train": paths, "val": paths}`.
    """
    settings = dict(num_train=num_train, num_val=num_val, steps=steps, fixed_layout=fixed_layout, seed=seed)
    # keys added later stay out of the manifest at their defaults, so older manifests still match
    if episodes_per_layout != 1:
        settings["episodes_per_layout"] = episodes_per_layout
    if lossless:
        settings["lossless"] = True
    if speed_range is not None:
        speed_range = (float(speed_range[0]), float(speed_range[1]))
        settings["speed_range"] = list(speed_range)
    if bump_fraction:
        settings["bump_fraction"] = bump_fraction
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    rng = np.random.default_rng(seed)
    crossings = 0
    bar = tqdm(total=num_train + num_val, desc="two rooms trajectories", unit="traj", disable=not progress)

    def samples(count: int, split: str) -> Iterator[dict[str, Any]]:
        nonlocal crossings
        shared = None
        for i in range(count):
            if episodes_per_layout > 1 and i % episodes_per_layout == 0:
                shared = sample_layout(rng, fixed_layout)
            walk = random_walk(
                rng, steps, fixed_layout, layout=shared, speed_range=speed_range, bump_fraction=bump_fraction
            )
            crossings += crossed_door(walk["states"], Layout(*walk["layout"]))
            layout = [int(v) for v in walk["layout"]]
            scene = 0 if fixed_layout else i // episodes_per_layout
            bar.update()
            yield trajectory_sample(
                f"{split}{i:06d}",
                walk["frames"],
                walk["actions"],
                walk["states"],
                lossless=lossless,
                source="two_rooms",
                layout=layout,
                scene=scene,
            )

    paths = {
        split: write_shards(samples(n, split), os.path.join(out_dir, split, "shard-%06d.tar"), episodes_per_shard)
        for split, n in (("train", num_train), ("val", num_val))
    }
    bar.close()
    manifest = {
        "settings": settings,
        "shards": {k: [os.path.relpath(p, out_dir) for p in v] for k, v in paths.items()},
    }
    manifest["door_crossing_fraction"] = crossings / max(num_train + num_val, 1)
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(manifest_path + ".tmp", manifest_path)
    return paths


def ensure_two_rooms_shards(out_dir: str, **kwargs: Any) -> dict[str, list[str]]:
    """The Two Rooms shards in `out_dir`, generated (seconds) unless a complete set with the same settings exists."""
    try:
        with open(os.path.join(out_dir, MANIFEST)) as f:
            manifest = json.load(f)
        defaults = {
            "num_train": 256,
            "num_val": 32,
            "steps": 48,
            "fixed_layout": False,
            "seed": 0,
            "episodes_per_layout": 1,
            "lossless": False,
            "speed_range": None,
            "bump_fraction": 0.0,
        }
        wanted = {**defaults, **{k: v for k, v in kwargs.items() if k in defaults}}
        if wanted["speed_range"] is not None:  # a Hydra ListConfig or tuple compares to the manifest's list
            wanted["speed_range"] = [float(v) for v in wanted["speed_range"]]
        paths = {k: [os.path.join(out_dir, p) for p in v] for k, v in manifest["shards"].items()}
        if {**defaults, **manifest["settings"]} == wanted and all(
            os.path.isfile(p) for v in paths.values() for p in v
        ):
            return paths
    except (OSError, ValueError, KeyError):
        pass
    return make_two_rooms_shards(out_dir, **kwargs)


class TwoRoomsDataModule(TrajectoryDataModule):
    """`TrajectoryDataModule` over the embedded Two Rooms random walks, recorded on first use (seconds) into
    `embedded_dir` and reused while their settings match; `shards` given: those instead.

    Args:
        embedded_dir: where the Two Rooms shards live.
        embedded: `make_two_rooms_shards` kwargs.
        split: which embedded split to train on ("train" or "val").
        shards, batch_size, num_workers, frames_per_clip, frame_step, crop_size, steps_per_epoch, seed, pin_memory,
            persistent_workers, batch_transform, raw_frames: as `TrajectoryDataModule`.
    """

    def __init__(
        self,
        shards: str | list[str] | None = None,
        embedded_dir: str = "data/two_rooms",
        embedded: dict[str, Any] | None = None,
        split: str = "train",
        batch_size: int = 8,
        num_workers: int = 2,
        frames_per_clip: int = 8,
        frame_step: int = 1,
        crop_size: int = 64,
        steps_per_epoch: int = 1000,
        seed: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        batch_transform: Any = None,
        raw_frames: bool = False,
    ) -> None:
        super().__init__(
            shards=shards,
            batch_size=batch_size,
            num_workers=num_workers,
            frames_per_clip=frames_per_clip,
            frame_step=frame_step,
            crop_size=crop_size,
            steps_per_epoch=steps_per_epoch,
            seed=seed,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            batch_transform=batch_transform,
            raw_frames=raw_frames,
        )
        self.embedded_dir = embedded_dir
        self.embedded = dict(embedded or {})
        self.split = split

    def resolve(self) -> str | list[str]:
        if self.shards is not None:
            return self.shards
        return ensure_two_rooms_shards(self.embedded_dir, **self.embedded)[self.split]

"""Trajectory shards for action-conditioned world models: format, converter, window sampling, DataModule.

Shard format (webdataset tar, one sample per episode, `__key__` without dots):
- `mp4`: the episode's frames (H.264 from `encode_mp4`; odd heights/widths lose their last row/column, since
  yuv420p needs even sizes), one frame per control step.
- `actions.npy`: (T, A) float32; row t is the action applied after frame t (it leads to frame t + 1). An episode
  with T - 1 actions is padded with a zero row, which is never used.
- `states.npy`: (T, S) float32; row t is the proprioceptive state at frame t.
- `json`: `{"fps", "n_frames", "height", "width", "action_dim", "state_dim", "source", ...}`.

Windows: T frames `frame_step` apart, from a random start. The action between two sampled frames is the SUM of the
actions over the step (right for displacement/delta actions, as in DROID and Two Rooms), the state is the one at
each sampled frame. A window yields `video` (3, T, S, S), `actions` (T - 1, A), `states` (T, S).
"""

from __future__ import annotations

import glob
import io
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from jepa.data.datamodule import BatchedClips, VideoDataModule
from jepa.data.decode import clip_indices, decode_clip, encode_mp4
from jepa.data.pipeline import VideoClipDataset
from jepa.data.shards import write_shards
from jepa.data.transforms import VideoTransform, even_frames
from jepa.envs.random_walk import crossed_door, random_walk
from jepa.envs.two_rooms import Layout, sample_layout

EPISODE_KEYS = ("frames", "actions", "states")
MANIFEST = "manifest.json"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def trajectory_sample(
    key: str,
    frames: np.ndarray,
    actions: np.ndarray,
    states: np.ndarray,
    fps: int = 10,
    lossless: bool = False,
    **meta: Any,
) -> dict[str, Any]:
    """One shard sample from an episode (see the module docstring for the format).

    Args:
        key: sample key (no dots).
        frames: (T, H, W, 3) uint8 RGB.
        actions: (T, A) or (T - 1, A).
        states: (T, S).
        fps: control frequency written into the mp4 and json.
        lossless: exact RGB frames (`encode_mp4(lossless=True)`), for rendered simulator frames.
        **meta: extra json fields (source, layout, ...).

    Raises:
        ValueError: when shapes do not agree (the message names the episode and each shape).
    """
    frames, actions, states = np.asarray(frames), np.asarray(actions, np.float32), np.asarray(states, np.float32)
    T = len(frames)
    if actions.ndim == 1:
        actions = actions[:, None]
    if states.ndim == 1:
        states = states[:, None]
    if len(actions) == T - 1:
        actions = np.concatenate([actions, np.zeros_like(actions[:1])])
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(actions) != T or len(states) != T or T < 2:
        raise ValueError(
            f"episode {key}: need frames (T, H, W, 3) with T >= 2, actions (T or T-1, A) and states (T, S); got "
            f"frames {frames.shape}, actions {actions.shape}, states {states.shape}"
        )
    if frames.dtype != np.uint8:
        frames = (frames * 255 + 0.5).clip(0, 255).astype(np.uint8) if frames.max() <= 1.0 else frames.astype(np.uint8)
    frames = even_frames(frames)
    info = {
        "fps": fps,
        "n_frames": T,
        "height": frames.shape[1],
        "width": frames.shape[2],
        "action_dim": actions.shape[1],
        "state_dim": states.shape[1],
        **meta,
    }
    return {
        "__key__": key,
        "mp4": encode_mp4(frames, fps, lossless=lossless),
        "actions.npy": _npy(actions),
        "states.npy": _npy(states),
        "json": info,
    }


def read_episode(path: str) -> dict[str, np.ndarray]:
    """Reads one episode file: `.npz` or `.h5`/`.hdf5` with datasets `frames`, `actions`, `states`."""
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            found = {k: data[k] for k in EPISODE_KEYS if k in data.files}
    elif path.endswith((".h5", ".hdf5")):
        import h5py  # optional dependency, only for hdf5 episodes

        with h5py.File(path, "r") as data:
            found = {k: data[k][()] for k in EPISODE_KEYS if k in data}
    else:
        raise ValueError(f"{path}: unsupported episode file; use .npz or .h5/.hdf5")
    missing = [k for k in EPISODE_KEYS if k not in found]
    if missing:
        raise ValueError(f"{path}: missing {missing}; an episode needs arrays named {list(EPISODE_KEYS)}")
    return found


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


def window_actions(actions: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """(T_ep, A) per-step actions -> (len(indices) - 1, A): the sum of the actions between consecutive indices."""
    cumsum = np.concatenate([np.zeros_like(actions[:1]), np.cumsum(actions, axis=0)])
    idx = np.asarray(indices)
    return cumsum[idx[1:]] - cumsum[idx[:-1]]


class TrajectoryWindowDataset(VideoClipDataset):
    """Endless stream of (video, actions, states) windows from trajectory shards (resampling, shuffling,
    seeding and skip accounting as `VideoClipDataset`).

    Yields:
        `{"video": (3, T, S, S), "actions": (T - 1, A), "states": (T, S), "scene": int, "key": str}`; `scene` is
        the episode json's `scene` id (episodes recorded in the same static scene), -1 where it has none. With
        `raw_frames = True` (set it after construction) the frames come as stored, `"frames"`: (T, H, W, 3) uint8,
        for world models that preprocess pixels themselves (`jepa.models.world_model.JEPAWorldModel`).
    """

    raw_frames = False

    def _decode(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        for name in ("mp4", "actions.npy", "states.npy"):
            if name not in sample:
                raise ValueError(f"missing {name}: not a trajectory sample (see jepa/data/trajectories.py)")
        actions = np.load(io.BytesIO(sample["actions.npy"]), allow_pickle=False)
        states = np.load(io.BytesIO(sample["states.npy"]), allow_pickle=False)
        # decode_clip draws the window start from `generator`; a copy of it gives the same indices here
        twin = torch.Generator().set_state(generator.get_state())
        indices = clip_indices(len(states), self.frames_per_clip, self.frame_step, twin)
        frames = decode_clip(sample["mp4"], self.frames_per_clip, self.frame_step, generator)
        pixels = {"frames": frames} if self.raw_frames else {"video": self.transform(frames, generator)}
        return {
            **pixels,
            "actions": torch.from_numpy(window_actions(actions, indices)).float(),
            "states": torch.from_numpy(states[indices]).float(),
            "scene": int(json.loads(sample["json"]).get("scene", -1)) if "json" in sample else -1,
            "key": sample.get("__key__", "?"),
        }


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


class TrajectoryDataModule(VideoDataModule):
    """Windows of trajectory shards (or the embedded Two Rooms set), batched in the workers.

    Args:
        shards: trajectory shard spec(s); None = the embedded Two Rooms random walks (generated on first use).
        embedded_dir: where the Two Rooms shards live.
        embedded: `make_two_rooms_shards` kwargs.
        split: which embedded split to train on ("train" or "val").
        batch_size, num_workers, frames_per_clip, frame_step, steps_per_epoch, seed, pin_memory,
            persistent_workers, batch_transform: as `VideoDataModule`.
        crop_size: output side S; frames are center-cropped to a square and resized, never flipped or randomly
            cropped (that would break the action/state correspondence).
        raw_frames: yield the stored frames untransformed as `frames` (B, T, H, W, 3) uint8 instead of `video`:
            the input of a jointly trained world model, which preprocesses pixels itself (`model=world_model`).
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
        persistent_workers: bool = False,
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
        )
        self.transform = VideoTransform(crop_size=crop_size, training=False)
        self.raw_frames = raw_frames
        self.embedded_dir = embedded_dir
        self.embedded = dict(embedded or {})
        self.split = split

    def resolve(self) -> str | list[str]:
        if self.shards is not None:
            return self.shards
        return ensure_two_rooms_shards(self.embedded_dir, **self.embedded)[self.split]

    def prepare_data(self) -> None:
        if self.shards is None:
            self.resolve()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        windows = TrajectoryWindowDataset(
            self.resolve(), self.frames_per_clip, self.frame_step, transform=self.transform, seed=self.seed
        )
        windows.raw_frames = self.raw_frames
        self.train_set = BatchedClips(windows, self.batch_size, self.batch_transform)

"""Training windows of trajectory shards (format: `jepa.data.trajectory_shards`): the window dataset and its
DataModule.

Windows: T frames `frame_step` apart, from a random start. The action between two sampled frames is the SUM of the
actions over the step (right for displacement/delta actions, as in DROID and Two Rooms), the state is the one at
each sampled frame. A window yields `video` (3, T, S, S), `actions` (T - 1, A), `states` (T, S).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from jepa.data.datamodule import BatchedClips, VideoDataModule
from jepa.data.decode import clip_indices, decode_clip
from jepa.data.pipeline import VideoClipDataset
from jepa.data.transforms import VideoTransform


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


class TrajectoryDataModule(VideoDataModule):
    """Windows of trajectory shards, batched in the workers (the embedded Two Rooms set:
    `jepa.envs.recorders.TwoRoomsDataModule`).

    Args:
        shards: trajectory shard spec(s).
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
        )
        self.transform = VideoTransform(crop_size=crop_size, training=False)
        self.raw_frames = raw_frames

    def resolve(self) -> str | list[str]:
        """The shard spec to read; subclasses that record their shards on first use override it."""
        if self.shards is None:
            raise ValueError("TrajectoryDataModule needs `shards` (data=trajectories data.shards=...)")
        return self.shards

    def prepare_data(self) -> None:
        self.resolve()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        windows = TrajectoryWindowDataset(
            self.resolve(), self.frames_per_clip, self.frame_step, transform=self.transform, seed=self.seed
        )
        windows.raw_frames = self.raw_frames
        self.train_set = BatchedClips(windows, self.batch_size, self.batch_transform)

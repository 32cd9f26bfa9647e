"""The trajectory shard format for action-conditioned world models: one episode -> one webdataset sample.

Shard format (webdataset tar, one sample per episode, `__key__` without dots):
- `mp4`: the episode's frames (H.264 from `encode_mp4`; odd heights/widths lose their last row/column, since
  yuv420p needs even sizes), one frame per control step.
- `actions.npy`: (T, A) float32; row t is the action applied after frame t (it leads to frame t + 1). An episode
  with T - 1 actions is padded with a zero row, which is never used.
- `states.npy`: (T, S) float32; row t is the proprioceptive state at frame t.
- `json`: `{"fps", "n_frames", "height", "width", "action_dim", "state_dim", "source", ...}`.

Written by `jepa.data.trajectory_convert` (your episode files), `jepa.envs.recorders` (the embedded Two Rooms walks)
and read by `jepa.data.trajectories` (windows for training).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from jepa.data.decode import encode_mp4
from jepa.data.transforms import even_frames

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

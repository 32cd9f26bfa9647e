"""gymnasium-robotics PointMaze seen from above, with the goal given only as an image (optional install).

`pip install -e .[pointmaze]` (gymnasium-robotics, MuJoCo); headless rendering needs `MUJOCO_GL=egl` and Debian's
`libegl1 libegl-mesa0`. The maze's own goal marker is hidden, so a frame shows the walls and the ball only; the goal
image is the same view with the ball placed at the goal.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections import deque
from typing import Any

import numpy as np

SUCCESS_DISTANCE = 0.45  # gymnasium-robotics' own success radius (maze units)


def _import_maze():
    os.environ.setdefault("MUJOCO_GL", "egl")
    # Mesa's EGL and triton each load their own LLVM: importing triton (torch does, lazily, e.g. for torch.compile)
    # after an EGL context exists segfaults the process; loaded the other way round, both work.
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    try:
        import gymnasium as gym
        import gymnasium_robotics
        import mujoco
    except ImportError as exn:
        raise ImportError(
            f"PointMaze needs gymnasium-robotics and MuJoCo ({exn}): `pip install -e .[pointmaze]`, and for headless "
            "rendering `apt-get install libegl1 libegl-mesa0` with MUJOCO_GL=egl"
        ) from exn
    gym.register_envs(gymnasium_robotics)
    return gym, mujoco


class TopDownPointMaze:
    """`PointMaze_<maze>-v3` rendered top-down at `size` x `size`, goal marker hidden.

    `reset(seed)` / `step(action)` return `(image, info)`; `info` holds `position` and `velocity` (maze units),
    `goal`, `distance` and `success` (distance <= 0.45, the environment's own test). Actions are the environment's
    2-D forces in [-1, 1]. The goal stays fixed for the episode.

    Args:
        maze: "UMaze", "Medium" or "Large".
        size: rendered image side in pixels.
    """

    def __init__(self, maze: str = "UMaze", size: int = 64) -> None:
        gym, self._mujoco = _import_maze()
        self.env = gym.make(
            f"PointMaze_{maze}-v3", render_mode="rgb_array", width=size, height=size, continuing_task=True
        )
        self.maze = self.env.unwrapped.maze
        self.size = size
        self._obs: dict[str, np.ndarray] = {}
        self._camera_ready = False

    @property
    def _point(self):
        return self.env.unwrapped.point_env

    def _setup_camera(self) -> None:
        model = self._point.model
        model.site_rgba[model.site("target").id][3] = 0.0  # the goal is only ever shown as an image
        viewer = self._point.mujoco_renderer._get_viewer("rgb_array")
        extent = max(self.maze.map_length, self.maze.map_width) * self.maze.maze_size_scaling
        viewer.cam.elevation, viewer.cam.azimuth = -90.0, 90.0
        viewer.cam.lookat[:] = (0.0, 0.0, 0.0)
        # the whole maze, border walls included, fills the frame: `size / extent` pixels per maze unit at the floor
        viewer.cam.distance = 0.5 * extent / math.tan(math.radians(model.vis.global_.fovy) / 2)
        self._camera_ready = True

    def render(self) -> np.ndarray:
        if not self._camera_ready:
            self._setup_camera()
        return np.ascontiguousarray(self.env.render())

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self._obs, _ = self.env.reset(seed=seed)
        return self.render(), self.info()

    def step(self, action: np.ndarray, render: bool = True) -> tuple[np.ndarray | None, dict[str, Any]]:
        """One control step; `render=False` skips the image (None), the costly part (about 8 ms against 0.1 ms)."""
        self._obs, _, _, _, _ = self.env.step(np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0))
        return (self.render() if render else None), self.info()

    def info(self) -> dict[str, Any]:
        position, goal = self._obs["achieved_goal"].copy(), self._obs["desired_goal"].copy()
        distance = float(np.linalg.norm(position - goal))
        return {
            "position": position,
            "velocity": self._obs["observation"][2:4].copy(),
            "goal": goal,
            "distance": distance,
            "success": distance <= SUCCESS_DISTANCE,
        }

    def goal_image(self) -> np.ndarray:
        """The current view with the ball moved to the goal (the simulation state is restored afterwards)."""
        data, model = self._point.data, self._point.model
        qpos, qvel = data.qpos.copy(), data.qvel.copy()
        data.qpos[:2], data.qvel[:] = self._obs["desired_goal"], 0.0
        self._mujoco.mj_forward(model, data)
        image = self.render()
        data.qpos[:], data.qvel[:] = qpos, qvel
        self._mujoco.mj_forward(model, data)
        return image


class MazeOracle:
    """Plans on the true state: a breadth-first path over the maze's free cells, then a PD controller toward the next
    cell centre (the goal itself in the goal's cell). A baseline for the planning benchmark."""

    def __init__(self, maze, gain: float = 3.0, damping: float = 1.0) -> None:
        self.maze = maze
        self.gain, self.damping = gain, damping

    def _path(self, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
        grid = np.asarray(self.maze.maze_map)
        previous = {start: start}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            if cell == goal:
                break
            i, j = cell
            for step in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nxt = (i + step[0], j + step[1])
                if grid[nxt] != 1 and nxt not in previous:
                    previous[nxt] = cell
                    queue.append(nxt)
        path = [goal]
        while path[-1] != start:
            path.append(previous[path[-1]])
        return path[::-1]

    def act(self, info: dict[str, Any]) -> np.ndarray:
        cell = tuple(int(v) for v in self.maze.cell_xy_to_rowcol(info["position"]))
        goal_cell = tuple(int(v) for v in self.maze.cell_xy_to_rowcol(info["goal"]))
        path = self._path(cell, goal_cell)
        target = info["goal"] if len(path) == 1 else self.maze.cell_rowcol_to_xy(np.asarray(path[1]))
        force = self.gain * (np.asarray(target) - info["position"]) - self.damping * info["velocity"]
        return np.clip(force, -1.0, 1.0).astype(np.float32)


def random_episode(
    env: TopDownPointMaze,
    rng: np.random.Generator,
    steps: int = 100,
    hold: tuple[int, int] = (4, 12),
    frame_step: int = 1,
) -> dict[str, np.ndarray]:
    """One random-action episode from a random start: a uniform random force, held for a random 4-11 steps, so the
    ball travels along corridors instead of jittering in place.

    With `frame_step` = k > 1 the episode is recorded one frame per k control steps, as a planner that repeats each
    planned action k times (`agent.action_repeat`) sees it: a new uniform force for every block of k steps, held
    through the block, the block's k forces summed into its action, and only the frame at each block's end rendered
    (rendering is the costly part, so this is about k times faster to make). `hold` is then unused.

    Returns:
        `frames` (n + 1, H, W, 3) uint8, `actions` (n, 2) forces (summed over each block), `states` (n + 1, 4) =
        (x, y, vx, vy), with n = steps // frame_step.
    """
    if frame_step > 1:
        return _block_episode(env, rng, steps // frame_step, frame_step)
    image, info = env.reset(int(rng.integers(2**31)))
    frames, actions, states = [image], [], [np.concatenate([info["position"], info["velocity"]])]
    action, left = np.zeros(2, dtype=np.float32), 0
    for _ in range(steps):
        if left == 0:
            action, left = rng.uniform(-1.0, 1.0, 2).astype(np.float32), int(rng.integers(*hold))
        image, info = env.step(action)
        left -= 1
        frames.append(image)
        actions.append(action)
        states.append(np.concatenate([info["position"], info["velocity"]]))
    return {
        "frames": np.stack(frames),
        "actions": np.stack(actions),
        "states": np.stack(states).astype(np.float32),
    }


def _block_episode(env: TopDownPointMaze, rng: np.random.Generator, blocks: int, k: int) -> dict[str, np.ndarray]:
    """`random_episode` recorded one frame per block of k control steps, each block one uniform random force."""
    image, info = env.reset(int(rng.integers(2**31)))
    frames, actions, states = [image], [], [np.concatenate([info["position"], info["velocity"]])]
    for _ in range(blocks):
        force = rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        for i in range(k):
            image, info = env.step(force, render=i == k - 1)
        frames.append(image)
        actions.append(k * force)
        states.append(np.concatenate([info["position"], info["velocity"]]))
    return {
        "frames": np.stack(frames),
        "actions": np.stack(actions).astype(np.float32),
        "states": np.stack(states).astype(np.float32),
    }

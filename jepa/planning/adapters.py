"""Environment adapters for `jepa.planning.mpc`: Two Rooms (embedded) and PointMaze (optional install)."""

from __future__ import annotations

import numpy as np

from jepa.envs.two_rooms import TwoRoomsEnv


class TwoRoomsAdapter:
    """`EnvAdapter` over `TwoRoomsEnv`: the state is the agent's (x, y) position in px, as in the trajectory shards.

    Args:
        fixed_layout: wall x 32 and door y 18 in every episode (else random per episode).
    """

    def __init__(self, fixed_layout: bool = False) -> None:
        self.env = TwoRoomsEnv(fixed_layout=fixed_layout)
        self.info: dict = {}
        self._obs: np.ndarray | None = None

    def reset(self, seed: int) -> None:
        self._obs, self.info = self.env.reset(seed=seed)

    def observation(self) -> np.ndarray:
        return self._obs

    def goal_image(self) -> np.ndarray:
        return self.info["goal_image"]

    def state(self) -> np.ndarray:
        return self.info["position"].astype(np.float32)

    def step(self, action: np.ndarray) -> None:
        self._obs, _, _, _, self.info = self.env.step(action)

    def distance(self) -> float:
        return float(self.info["distance"])

    def success(self) -> bool:
        return bool(self.info["success"])


class PointMazeAdapter:
    """`EnvAdapter` over `TopDownPointMaze` (gymnasium-robotics PointMaze from above, goal marker hidden).

    The state is the ball's (x, y, vx, vy) in maze units; actions are the environment's 2-D forces in [-1, 1] (not
    displacements: train the world model with `model.integrate_states=false`).

    Args:
        maze: "UMaze", "Medium" or "Large".
        size: rendered image side in pixels.
    """

    def __init__(self, maze: str = "UMaze", size: int = 64) -> None:
        from jepa.envs.point_maze import TopDownPointMaze

        self.env = TopDownPointMaze(maze, size)
        self.info: dict = {}
        self._obs: np.ndarray | None = None

    def reset(self, seed: int) -> None:
        self._obs, self.info = self.env.reset(seed)

    def observation(self) -> np.ndarray:
        return self._obs

    def goal_image(self) -> np.ndarray:
        return self.env.goal_image()

    def state(self) -> np.ndarray:
        return np.concatenate([self.info["position"], self.info["velocity"]]).astype(np.float32)

    def step(self, action: np.ndarray) -> None:
        self._obs, self.info = self.env.step(action)

    def distance(self) -> float:
        return float(self.info["distance"])

    def success(self) -> bool:
        return bool(self.info["success"])

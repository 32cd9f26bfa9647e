"""Environment adapters for the planning loop (`jepa.planning.mpc.run_episode`): Two Rooms (embedded) and PointMaze
(optional install).

An adapter states what a planner needs to know about the environment: its `action_space` (one environment step's
box) and `max_action_norm` (a norm limit per step, or None), so that a planner is configured from the environment
(`jepa.planning.planners.ActionBounds.from_env`) instead of from numbers typed into configs; and it offers the
scripted `oracle_action`, so the oracle runs through the same episode loop as the learned planners.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from jepa.envs.two_rooms import MAX_STEP, DoorOracle, TwoRoomsEnv


class _InfoAdapter:
    """What both adapters share: the last observation, and distance, success and the oracle's next action read from
    the environment's last `info` (subclasses set `_obs`, `info` and `_oracle`)."""

    info: dict
    _obs: np.ndarray | None

    def observation(self) -> np.ndarray:
        return self._obs

    def distance(self) -> float:
        return float(self.info["distance"])

    def success(self) -> bool:
        return bool(self.info["success"])

    def oracle_action(self) -> np.ndarray:
        """The scripted oracle's next action, from the true state (`DoorOracle`, `MazeOracle`)."""
        return self._oracle.act(self.info)


class TwoRoomsAdapter(_InfoAdapter):
    """`EnvAdapter` over `TwoRoomsEnv`: the state is the agent's (x, y) position in px, as in the trajectory shards.

    Args:
        fixed_layout: wall x 32 and door y 18 in every episode (else random per episode).
    """

    max_action_norm: float | None = MAX_STEP

    def __init__(self, fixed_layout: bool = False) -> None:
        self.env = TwoRoomsEnv(fixed_layout=fixed_layout)
        self.action_space: gym.spaces.Box = self.env.action_space
        self.info: dict = {}
        self._obs: np.ndarray | None = None
        self._oracle = DoorOracle()

    def reset(self, seed: int) -> None:
        self._obs, self.info = self.env.reset(seed=seed)

    def goal_image(self) -> np.ndarray:
        return self.info["goal_image"]

    def state(self) -> np.ndarray:
        return self.info["position"].astype(np.float32)

    def step(self, action: np.ndarray) -> None:
        self._obs, _, _, _, self.info = self.env.step(action)


class PointMazeAdapter(_InfoAdapter):
    """`EnvAdapter` over `TopDownPointMaze` (gymnasium-robotics PointMaze from above, goal marker hidden).

    The state is the ball's (x, y, vx, vy) in maze units; actions are the environment's 2-D forces in [-1, 1] (not
    displacements: train the world model with `model.integrate_states=false`).

    Args:
        maze: "UMaze", "Medium" or "Large".
        size: rendered image side in pixels.
    """

    max_action_norm: float | None = None

    def __init__(self, maze: str = "UMaze", size: int = 64) -> None:
        from jepa.envs.point_maze import MazeOracle, TopDownPointMaze

        self.env = TopDownPointMaze(maze, size)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.info: dict = {}
        self._obs: np.ndarray | None = None
        self._oracle = MazeOracle(self.env.maze)

    def reset(self, seed: int) -> None:
        self._obs, self.info = self.env.reset(seed)

    def goal_image(self) -> np.ndarray:
        return self.env.goal_image()

    def state(self) -> np.ndarray:
        return np.concatenate([self.info["position"], self.info["velocity"]]).astype(np.float32)

    def step(self, action: np.ndarray) -> None:
        self._obs, self.info = self.env.step(action)

"""Two Rooms: a point agent in two rooms joined by a door, following the protocol of facebookresearch/eb_jepa
(`DotWall`, from the PLDM paper), so planning results compare with the published ones.

65x65 RGB image; the agent is a Gaussian dot (std 1.3 px); a border and a vertical wall 3 px wide with a door of
half-height 4 px; wall x and door y are random per episode (or fixed: wall x 32, door y 18). An action is a 2-D
displacement in pixels whose norm is clipped to 2.45; a move that would enter a wall leaves the agent where it is.
Start and goal lie in different rooms; an episode lasts 200 steps; success = final distance to the goal < 4.5 px.
Numpy only; one frame renders in a few microseconds of numpy work.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np

SIZE = 65
BORDER = 3  # wall pixels on each image edge
WALL_HALF = 1  # the wall covers wall_x - 1 .. wall_x + 1 (3 px)
DOOR_HALF = 4  # the door covers door_y - 4 .. door_y + 4
DOT_STD = 1.3
MAX_STEP = 2.45
EPISODE_STEPS = 200
SUCCESS_DIST = 4.5
FIXED_WALL_X, FIXED_DOOR_Y = 32, 18
WALL_X_RANGE = (20, 44)  # random layouts keep both rooms at least ~16 px wide
DOOR_Y_RANGE = (BORDER + DOOR_HALF + 4, SIZE - 1 - BORDER - DOOR_HALF - 4)
ROOM_MARGIN = 2.5  # sampled starts/goals keep this distance from every wall
AGENT_RGB = np.array([255, 64, 32], dtype=np.float32)
WALL_RGB = np.array([64, 128, 255], dtype=np.float32)

DOT_RADIUS = 6


@dataclass(frozen=True)
class Layout:
    """Wall column (centre of the 3 px wall) and door row (centre of the door)."""

    wall_x: int = FIXED_WALL_X
    door_y: int = FIXED_DOOR_Y

    def is_wall(self, x: float, y: float) -> bool:
        """True if the point (x, y) lies in the border or in the wall outside the door."""
        return bool(is_wall(self.wall_x, self.door_y, x, y))

    def room(self, x: float) -> int:
        """0 = left room, 1 = right room (the door itself counts for the side of its centre line)."""
        return int(x > self.wall_x)

    def wall_mask(self) -> np.ndarray:
        """(SIZE, SIZE) bool image of border and wall pixels."""
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        mask[:BORDER], mask[-BORDER:], mask[:, :BORDER], mask[:, -BORDER:] = True, True, True, True
        mask[:, self.wall_x - WALL_HALF : self.wall_x + WALL_HALF + 1] = True
        mask[
            self.door_y - DOOR_HALF : self.door_y + DOOR_HALF + 1,
            self.wall_x - WALL_HALF : self.wall_x + WALL_HALF + 1,
        ] = False
        return mask


def clip_action(action: np.ndarray) -> np.ndarray:
    """Scales a 2-D displacement down to norm <= 2.45 (direction kept)."""
    action = np.asarray(action, dtype=np.float64).reshape(2)
    norm = float(np.linalg.norm(action))
    return action * (MAX_STEP / norm) if norm > MAX_STEP else action


def is_wall(wall_x: np.ndarray | float, door_y: np.ndarray | float, x: np.ndarray | float, y: np.ndarray | float):
    """Element-wise (broadcast) test: the point (x, y) lies in the border or in the wall (column `wall_x`) outside
    the door (centred on row `door_y`)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    border = (x < BORDER) | (y < BORDER) | (x > SIZE - 1 - BORDER) | (y > SIZE - 1 - BORDER)
    return border | ((np.abs(x - wall_x) <= WALL_HALF + 0.5) & (np.abs(y - door_y) > DOOR_HALF))


def move_batch(wall_x: np.ndarray, door_y: np.ndarray, pos: np.ndarray, action: np.ndarray) -> np.ndarray:
    """`move` for a batch: wall_x, door_y (B,), positions and actions (B, 2) -> next positions (B, 2).

    Each displacement is clipped to norm 2.45; a move whose straight segment touches a wall leaves the agent in place.
    """
    pos, action = np.asarray(pos, dtype=np.float64), np.asarray(action, dtype=np.float64)
    norm = np.linalg.norm(action, axis=-1, keepdims=True)
    step = np.where(norm > MAX_STEP, action * (MAX_STEP / np.maximum(norm, 1e-12)), action)
    blocked = np.zeros(pos.shape[:-1], dtype=bool)
    # sample the segment finely enough (< 0.5 px apart) that the 3 px wall cannot be jumped over
    for k in range(1, 8):
        point = pos + k / 7 * step
        blocked |= is_wall(wall_x, door_y, point[..., 0], point[..., 1])
    return np.where(blocked[..., None], pos, pos + step)


def move(layout: Layout, pos: np.ndarray, action: np.ndarray) -> np.ndarray:
    """One step: the clipped displacement, unless the straight segment touches a wall (then no motion)."""
    wall, door = np.array([layout.wall_x], np.float64), np.array([layout.door_y], np.float64)
    return move_batch(wall, door, np.asarray(pos, np.float64).reshape(1, 2), np.asarray(action).reshape(1, 2))[0]


@lru_cache(maxsize=256)
def _background(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The layout's wall image (SIZE, SIZE, 3) float32 and its free-pixel mask (SIZE, SIZE) (cached: read only)."""
    walls = layout.wall_mask()
    img = np.zeros((SIZE, SIZE, 3), dtype=np.float32)
    img[walls] = WALL_RGB
    return img, ~walls


def render(layout: Layout, pos: np.ndarray) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 RGB: walls in blue, the agent as a red Gaussian dot on black (walls drawn on top)."""
    background, free_mask = _background(layout)
    img = background.copy()
    # beyond DOT_RADIUS px the dot is below 1/255 and truncates to 0: drawing only this window is exact
    x0, y0 = (max(int(c) - DOT_RADIUS, 0) for c in pos)
    x1, y1 = (min(int(c) + DOT_RADIUS + 1, SIZE) for c in pos)
    xx, yy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    dot = np.exp(-((xx - pos[0]) ** 2 + (yy - pos[1]) ** 2) / (2 * DOT_STD**2))[..., None] * AGENT_RGB
    window = img[y0:y1, x0:x1]
    free = free_mask[y0:y1, x0:x1]
    window[free] = dot[free]
    return img.clip(0, 255).astype(np.uint8)


def render_batch(wall_x: np.ndarray, door_y: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """`render` for B layouts and T positions each: wall_x, door_y (B,), positions (B, T, 2) -> (B, T, 65, 65, 3)
    uint8, pixel for pixel what `render` draws (the same window around each dot, the same float64 -> float32 ->
    uint8 rounding). Only the uint8 frames and the dots' windows are allocated, so a batch costs a few ms."""
    wall_x, door_y = np.asarray(wall_x).astype(int), np.asarray(door_y).astype(int)
    pos = np.asarray(positions, dtype=np.float64)
    B, T = pos.shape[:2]
    axis = np.arange(SIZE)
    column = np.abs(axis[None, :] - wall_x[:, None]) <= WALL_HALF  # (B, W)
    door = np.abs(axis[None, :] - door_y[:, None]) <= DOOR_HALF  # (B, H)
    walls = column[:, None, :] & ~door[:, :, None]  # (B, H, W)
    walls[:, :BORDER], walls[:, -BORDER:], walls[:, :, :BORDER], walls[:, :, -BORDER:] = True, True, True, True
    background = np.where(walls[..., None], WALL_RGB.astype(np.uint8), np.uint8(0))  # (B, H, W, 3)
    img = np.repeat(background[:, None], T, axis=1)
    # the dot's window, as `render`: int(c) - DOT_RADIUS .. int(c) + DOT_RADIUS on each axis, cut to the image
    offsets = np.arange(-DOT_RADIUS, DOT_RADIUS + 1)
    cols = pos[..., 0].astype(int)[..., None] + offsets  # (B, T, K)
    rows = pos[..., 1].astype(int)[..., None] + offsets
    two_var = 2 * DOT_STD**2
    gx = np.exp(-((cols.astype(np.float32) - pos[..., 0, None]) ** 2) / two_var)
    gy = np.exp(-((rows.astype(np.float32) - pos[..., 1, None]) ** 2) / two_var)
    dot = gy[..., :, None] * gx[..., None, :]  # (B, T, K, K) float64
    values = (dot[..., None] * AGENT_RGB).astype(np.float32).clip(0, 255).astype(np.uint8)
    r, c = np.broadcast_arrays(rows[..., :, None], cols[..., None, :])  # (B, T, K, K)
    b, t = np.broadcast_arrays(np.arange(B)[:, None, None, None], np.arange(T)[None, :, None, None], r)[:2]
    inside = (r >= 0) & (r < SIZE) & (c >= 0) & (c < SIZE)
    rc, cc = r.clip(0, SIZE - 1), c.clip(0, SIZE - 1)
    draw = inside & ~walls[b, rc, cc]  # walls stay on top
    img[b[draw], t[draw], rc[draw], cc[draw]] = values[draw]
    return img


def sample_layout(rng: np.random.Generator, fixed: bool) -> Layout:
    if fixed:
        return Layout()
    return Layout(int(rng.integers(*WALL_X_RANGE, endpoint=True)), int(rng.integers(*DOOR_Y_RANGE, endpoint=True)))


def sample_in_room(rng: np.random.Generator, layout: Layout, room: int) -> np.ndarray:
    """A uniform free position in the given room, at least ROOM_MARGIN from any wall."""
    lo_x = BORDER + ROOM_MARGIN if room == 0 else layout.wall_x + WALL_HALF + 0.5 + ROOM_MARGIN
    hi_x = layout.wall_x - WALL_HALF - 0.5 - ROOM_MARGIN if room == 0 else SIZE - 1 - BORDER - ROOM_MARGIN
    y = rng.uniform(BORDER + ROOM_MARGIN, SIZE - 1 - BORDER - ROOM_MARGIN)
    return np.array([rng.uniform(lo_x, hi_x), y])


class TwoRoomsEnv(gym.Env):
    """Gymnasium environment of the Two Rooms task.

    Observation: (65, 65, 3) uint8 RGB. Action: (2,) float32 displacement in pixels (x right, y down), norm
    clipped to 2.45. Reward: minus the distance to the goal. The episode is truncated after 200 steps.

    `reset(seed=..., options={"start": (x, y), "goal": (x, y), "wall_x": int, "door_y": int})` sets any part of
    the task; the rest is drawn (start and goal in different rooms). `info` holds `position`, `goal`,
    `goal_image`, `distance`, `success`, `wall_x` and `door_y`.

    Args:
        fixed_layout: use wall x 32 and door y 18 in every episode instead of random ones.
        max_steps: episode length.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, fixed_layout: bool = False, max_steps: int = EPISODE_STEPS) -> None:
        self.fixed_layout = fixed_layout
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Box(-MAX_STEP, MAX_STEP, (2,), dtype=np.float32)
        self.render_mode = "rgb_array"
        self.layout = Layout()
        self.position = np.zeros(2)
        self.goal = np.zeros(2)
        self.steps = 0
        self._goal_image: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        layout = sample_layout(self.np_random, self.fixed_layout)
        self.layout = Layout(int(options.get("wall_x", layout.wall_x)), int(options.get("door_y", layout.door_y)))
        start_room = int(self.np_random.integers(2))
        if "start" in options:
            self.position = np.asarray(options["start"], dtype=np.float64)
            start_room = self.layout.room(self.position[0])
        else:
            self.position = sample_in_room(self.np_random, self.layout, start_room)
        if "goal" in options:
            self.goal = np.asarray(options["goal"], dtype=np.float64)
        else:
            self.goal = sample_in_room(self.np_random, self.layout, 1 - start_room)
        for name, point in (("start", self.position), ("goal", self.goal)):
            if self.layout.is_wall(*point):
                raise ValueError(f"{name} {tuple(point)} lies in a wall of layout {self.layout}; choose a free point")
        self.steps = 0
        self._goal_image = render(self.layout, self.goal)
        return self.render(), self._info()

    def step(self, action: np.ndarray):
        self.position = move(self.layout, self.position, action)
        self.steps += 1
        info = self._info()
        return self.render(), -info["distance"], False, self.steps >= self.max_steps, info

    def render(self) -> np.ndarray:
        return render(self.layout, self.position)

    def _info(self) -> dict[str, Any]:
        distance = float(np.linalg.norm(self.position - self.goal))
        return {
            "position": self.position.copy(),
            "goal": self.goal.copy(),
            "goal_image": self._goal_image,
            "distance": distance,
            "success": distance < SUCCESS_DIST,
            "wall_x": self.layout.wall_x,
            "door_y": self.layout.door_y,
        }


class DoorOracle:
    """Scripted policy for the planning baselines: to the door, through it, then straight to the goal.

    Call `act(info)` with the env's latest `info`; it returns a full-length step toward the current waypoint.
    """

    def __init__(self, approach: float = 4.0) -> None:
        self.approach = approach

    def waypoint(self, info: dict[str, Any]) -> np.ndarray:
        pos, goal = info["position"], info["goal"]
        wall_x, door_y = info["wall_x"], info["door_y"]
        side = 1.0 if goal[0] > wall_x else -1.0  # the goal's side of the wall
        progress = side * (pos[0] - wall_x)  # > 0: on the goal's side
        clear = WALL_HALF + 0.5 + self.approach
        if progress > WALL_HALF + 1.5:
            return goal  # the goal's room is convex: a straight line gets there
        if abs(pos[1] - door_y) <= 1.0 and progress >= -clear - 1.0:
            return np.array([wall_x + side * clear, door_y])  # lined up with the door: through it
        return np.array([wall_x - side * clear, door_y])  # line up in front of the door first

    def act(self, info: dict[str, Any]) -> np.ndarray:
        delta = self.waypoint(info) - info["position"]
        return clip_action(delta).astype(np.float32)

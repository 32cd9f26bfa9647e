"""Random-walk trajectories in Two Rooms, following eb_jepa's data recipe for its DotWall world model.

The heading drifts with von Mises noise, the step length is about 1 +/- 0.4 px, and about a third of the walks
start in front of the door heading through it, so that crossings are well represented. Walls stop the agent
exactly as in the environment (`two_rooms.move`).

A planner that moves at the environment's full 2.45 px per step asks the world model about displacements and wall
collisions that eb_jepa's slow walks show only at walking pace: `speed_range` draws each walk's mean step length from a range
(up to the step limit) and `bump_fraction` starts some walks in front of the wall, away from the door, heading
into it.
"""

from __future__ import annotations

import numpy as np

from jepa.envs.two_rooms import (
    BORDER,
    DOOR_HALF,
    DOOR_Y_RANGE,
    FIXED_DOOR_Y,
    FIXED_WALL_X,
    MAX_STEP,
    ROOM_MARGIN,
    SIZE,
    WALL_HALF,
    WALL_X_RANGE,
    Layout,
    move,
    move_batch,
    render,
    render_batch,
    sample_in_room,
    sample_layout,
)


def random_walk(
    rng: np.random.Generator,
    steps: int = 64,
    fixed_layout: bool = False,
    door_fraction: float = 1 / 3,
    kappa: float = 4.0,
    step_mean: float = 1.0,
    step_std: float = 0.4,
    layout: Layout | None = None,
    speed_range: tuple[float, float] | None = None,
    bump_fraction: float = 0.0,
) -> dict[str, np.ndarray]:
    """One trajectory of `steps` actions (steps + 1 frames).

    Args:
        rng: source of every random choice.
        steps: actions per trajectory.
        fixed_layout: wall x 32 / door y 18 instead of a random layout.
        door_fraction: share of walks started in front of the door, heading through it.
        kappa: von Mises concentration of the per-step heading change (larger = straighter).
        step_mean, step_std: step length distribution in px (clipped at 0).
        layout: walk in this layout instead of drawing one (`fixed_layout` is then ignored).
        speed_range: draw this walk's mean step length uniformly from [low, high] px instead of `step_mean`;
            step lengths are then clipped to the environment's 2.45 px.
        bump_fraction: share of walks started 3-9 px from the wall's centre line, at least 3 px above or below the door,
            heading into it (drawn after the door walks: the two shares add up).

    Returns:
        `frames` (steps+1, 65, 65, 3) uint8, `actions` (steps, 2) float32 displacements,
        `states` (steps+1, 2) float32 positions (x, y) in px, `layout` (2,) int (wall x, door y).
    """
    if layout is None:
        layout = sample_layout(rng, fixed_layout)
    if speed_range is not None:
        step_mean = float(rng.uniform(*speed_range))
    start = rng.random()
    if start >= door_fraction and start < door_fraction + bump_fraction:
        side = -1.0 if rng.random() < 0.5 else 1.0
        pos = np.array(
            [layout.wall_x + side * rng.uniform(WALL_HALF + 2.0, WALL_HALF + 8.0), _off_door_y(rng, layout)]
        )
        heading = (0.0 if side < 0 else np.pi) + rng.uniform(-0.5, 0.5)
    elif start < door_fraction:
        side = -1.0 if rng.random() < 0.5 else 1.0
        offset = rng.uniform(WALL_HALF + 2.0, WALL_HALF + 8.0)
        pos = np.array([layout.wall_x + side * offset, layout.door_y + rng.uniform(-2.0, 2.0)])
        heading = 0.0 if side < 0 else np.pi
    else:
        pos = sample_in_room(rng, layout, int(rng.integers(2)))
        heading = rng.uniform(-np.pi, np.pi)
    positions, actions = [pos], []
    for _ in range(steps):
        heading += rng.vonmises(0.0, kappa)
        length = max(rng.normal(step_mean, step_std), 0.0)
        if speed_range is not None:
            length = min(length, MAX_STEP)
        action = length * np.array([np.cos(heading), np.sin(heading)])
        pos = move(layout, pos, action)
        positions.append(pos)
        actions.append(action)
    states = np.stack(positions).astype(np.float32)
    return {
        "frames": np.stack([render(layout, p) for p in states]),
        "actions": np.stack(actions).astype(np.float32),
        "states": states,
        "layout": np.array([layout.wall_x, layout.door_y]),
    }


def _off_door_y(rng: np.random.Generator, layout: Layout) -> float:
    """A row in front of the wall's solid part: inside the room, at least 3 px beyond the door's edge."""
    low, high = BORDER + ROOM_MARGIN, SIZE - 1 - BORDER - ROOM_MARGIN  # as `sample_in_room`
    above = (low, layout.door_y - DOOR_HALF - 3.0)
    below = (layout.door_y + DOOR_HALF + 3.0, high)
    spans = [r for r in (above, below) if r[1] > r[0]]
    weights = np.array([r[1] - r[0] for r in spans])
    lo, hi = spans[int(rng.choice(len(spans), p=weights / weights.sum()))]
    return float(rng.uniform(lo, hi))


def crossed_door(states: np.ndarray, layout: Layout) -> bool:
    """True if the trajectory's positions (T, 2) visit both rooms."""
    rooms = {layout.room(x) for x in states[:, 0]}
    return len(rooms) == 2


class TwoRoomsWalks:
    """Random-walk clips in Two Rooms, drawn a batch at a time with a new layout per clip: the on-the-fly training
    data of jointly trained world models (`jepa.data.generated.GeneratedClipDataModule` calls it).

    The same walk as `random_walk` (von Mises heading drift, per-walk speed, door and wall-bump starts, walls that
    stop the agent as `two_rooms.move` does), vectorised over the batch: a batch of 64 clips of 17 frames takes a few
    milliseconds, so no dataset is stored. (`random_walk` stays the per-trajectory version behind the stored
    shards, whose random draws it must keep.)

    Args:
        frames: frames per clip T (T - 1 actions).
        fixed_layout: wall x 32 / door y 18 in every clip instead of a random layout per clip.
        door_fraction: share of clips started in front of the door, heading through it.
        bump_fraction: share of clips started 3-9 px from the wall away from the door, heading into it.
        kappa: von Mises concentration of the per-step heading change.
        speed_range: each clip's mean step length, uniform in [low, high] px.
        step_std: spread of the step length around the clip's mean (clipped to [0, 2.45] px).
        clips_per_layout: consecutive clips of a batch that share one layout (1: a new layout per clip); the
            objective's scene-variance term pools them (`objective.scene_clips`). Must divide the batch size.
    """

    def __init__(
        self,
        frames: int = 17,
        fixed_layout: bool = False,
        door_fraction: float = 0.35,
        bump_fraction: float = 0.0,
        kappa: float = 4.0,
        speed_range: tuple[float, float] = (0.5, MAX_STEP),
        step_std: float = 0.4,
        clips_per_layout: int = 1,
    ) -> None:
        if clips_per_layout < 1:
            raise ValueError(f"clips_per_layout must be >= 1, got {clips_per_layout}")
        if frames < 2:
            raise ValueError(f"TwoRoomsWalks needs frames >= 2 (a clip holds frames - 1 actions), got {frames}")
        if not 0.0 <= door_fraction + bump_fraction <= 1.0:
            raise ValueError(f"door_fraction + bump_fraction must lie in [0, 1], got {door_fraction + bump_fraction}")
        self.frames, self.fixed_layout = frames, fixed_layout
        self.door_fraction, self.bump_fraction = door_fraction, bump_fraction
        self.kappa, self.speed_range, self.step_std = kappa, tuple(speed_range), step_std
        self.clips_per_layout = clips_per_layout

    def layouts(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(B,) wall columns and (B,) door rows (each layout repeated for `clips_per_layout` consecutive clips)."""
        if self.fixed_layout:
            return np.full(batch_size, FIXED_WALL_X), np.full(batch_size, FIXED_DOOR_Y)
        k = self.clips_per_layout
        if batch_size % k:
            raise ValueError(
                f"clips_per_layout={k} does not divide the batch of {batch_size} clips: make data.batch_size a "
                "multiple of it"
            )
        n = batch_size // k
        walls = rng.integers(WALL_X_RANGE[0], WALL_X_RANGE[1] + 1, n)
        doors = rng.integers(DOOR_Y_RANGE[0], DOOR_Y_RANGE[1] + 1, n)
        return np.repeat(walls, k), np.repeat(doors, k)

    def starts(
        self, rng: np.random.Generator, wall_x: np.ndarray, door_y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, 2) start positions and (B,) headings: uniform in a random room, or in front of the door heading
        through it, or in front of the wall heading into it."""
        B = len(wall_x)
        room = rng.integers(0, 2, B)
        low_x = np.where(room == 0, BORDER + ROOM_MARGIN, wall_x + WALL_HALF + 0.5 + ROOM_MARGIN)
        high_x = np.where(room == 0, wall_x - WALL_HALF - 0.5 - ROOM_MARGIN, SIZE - 1 - BORDER - ROOM_MARGIN)
        x = rng.uniform(low_x, high_x)
        y = rng.uniform(BORDER + ROOM_MARGIN, SIZE - 1 - BORDER - ROOM_MARGIN, B)
        heading = rng.uniform(-np.pi, np.pi, B)
        kind = rng.random(B)
        side = np.where(rng.random(B) < 0.5, -1.0, 1.0)
        offset = rng.uniform(WALL_HALF + 2.0, WALL_HALF + 8.0, B)
        toward_wall = np.where(side < 0, 0.0, np.pi)
        door = kind < self.door_fraction
        x = np.where(door, wall_x + side * offset, x)
        y = np.where(door, door_y + rng.uniform(-2.0, 2.0, B), y)
        heading = np.where(door, toward_wall, heading)
        bump = (kind >= self.door_fraction) & (kind < self.door_fraction + self.bump_fraction)
        if bump.any():
            rows = np.array(
                [_off_door_y(rng, Layout(int(w), int(d))) for w, d in zip(wall_x[bump], door_y[bump], strict=False)]
            )
            x[bump] = (wall_x + side * offset)[bump]
            y[bump] = rows
            heading[bump] = (toward_wall + rng.uniform(-0.5, 0.5, B))[bump]
        return np.stack([x, y], axis=-1), heading

    def __call__(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        """One batch: `frames` (B, T, 65, 65, 3) uint8, `actions` (B, T - 1, 2) float32 displacements (px),
        `states` (B, T, 2) float32 positions (px), `layout` (B, 2) int (wall x, door y)."""
        wall_x, door_y = self.layouts(rng, batch_size)
        pos, heading = self.starts(rng, wall_x, door_y)
        speed = rng.uniform(*self.speed_range, batch_size)
        positions, actions = [pos], []
        for _ in range(self.frames - 1):
            heading = heading + rng.vonmises(0.0, self.kappa, batch_size)
            length = np.clip(rng.normal(speed, self.step_std), 0.0, MAX_STEP)
            action = length[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=-1)
            pos = move_batch(wall_x, door_y, pos, action)
            positions.append(pos)
            actions.append(action)
        states = np.stack(positions, axis=1)
        return {
            "frames": render_batch(wall_x, door_y, states),
            "actions": np.stack(actions, axis=1).astype(np.float32),
            "states": states.astype(np.float32),
            "layout": np.stack([wall_x, door_y], axis=-1),
        }

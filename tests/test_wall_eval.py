"""benchmarks/wall_eval.py: its starts split into free and blocked moves as the environment decides them."""

from __future__ import annotations

import numpy as np

from benchmarks import wall_eval
from jepa.envs.two_rooms import MAX_STEP, Layout, move


def test_starts_in_front_of_the_wall_are_blocked_unless_at_the_door():
    layout = Layout()
    starts, actions, ends = wall_eval.starts_and_outcomes(np.random.default_rng(0), layout, 4 * MAX_STEP, 64, 4)
    assert np.allclose(np.linalg.norm(actions, axis=1), 4 * MAX_STEP)
    wall_starts = slice(0, None, 2)
    blocked = np.linalg.norm(ends - starts, axis=1) < 0.6 * 4 * MAX_STEP
    assert blocked[wall_starts].mean() > 0.5  # most wall starts face the wall's solid part
    # every end is where four equal environment steps take the agent, never inside or across the wall
    for start, action, end in zip(starts, actions, ends, strict=True):
        position = start
        for _ in range(4):
            position = move(layout, position, action / 4)
        assert np.allclose(position, end) and not layout.is_wall(*end)

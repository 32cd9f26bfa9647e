"""Two Rooms: the oracle solves every seeded episode, random actions almost none, walls block, goal images."""

from __future__ import annotations

import numpy as np
import pytest

from jepa.envs.random_walk import crossed_door, random_walk
from jepa.envs.two_rooms import AGENT_RGB, MAX_STEP, SIZE, DoorOracle, Layout, TwoRoomsEnv, move


def run_episode(env: TwoRoomsEnv, seed: int, policy) -> dict:
    _, info = env.reset(seed=seed)
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(policy(info))
    return info


@pytest.mark.parametrize("fixed", [False, True])
def test_oracle_succeeds_and_random_fails(fixed):
    env = TwoRoomsEnv(fixed_layout=fixed)
    oracle = DoorOracle()
    rng = np.random.default_rng(0)
    oracle_wins = sum(run_episode(env, seed, oracle.act)["success"] for seed in range(50))
    random_wins = sum(
        run_episode(env, seed, lambda _: rng.uniform(-MAX_STEP, MAX_STEP, 2))["success"] for seed in range(50)
    )
    assert oracle_wins == 50
    assert random_wins <= 2


def test_start_and_goal_in_different_rooms_and_episode_length():
    env = TwoRoomsEnv()
    for seed in range(20):
        _, info = env.reset(seed=seed)
        layout = Layout(info["wall_x"], info["door_y"])
        assert layout.room(info["position"][0]) != layout.room(info["goal"][0])
    steps = 0
    truncated = False
    while not truncated:
        *_, truncated, _ = env.step(np.zeros(2))
        steps += 1
    assert steps == 200


def test_walls_block_motion():
    layout = Layout(32, 18)
    # straight into the wall, far from the door: no motion at all
    pos = np.array([29.0, 50.0])
    for _ in range(5):
        pos = move(layout, pos, np.array([2.45, 0.0]))
    assert pos[0] < 32 - 1.5
    # through the door: passes
    pos = np.array([29.0, 18.0])
    for _ in range(4):
        pos = move(layout, pos, np.array([2.45, 0.0]))
    assert pos[0] > 32 + 1.5
    # the border stops the agent too, and long actions are clipped to 2.45
    pos = move(layout, np.array([5.0, 5.0]), np.array([-10.0, 0.0]))
    np.testing.assert_allclose(pos, [5.0, 5.0])
    np.testing.assert_allclose(move(layout, np.array([10.0, 40.0]), np.array([0.0, 10.0])), [10.0, 42.45])


def test_goal_image_shows_agent_at_goal_and_options():
    env = TwoRoomsEnv()
    obs, info = env.reset(seed=3, options={"start": (10.0, 10.0), "goal": (50.0, 40.0), "wall_x": 30, "door_y": 25})
    assert obs.shape == (SIZE, SIZE, 3) and obs.dtype == np.uint8
    assert (info["wall_x"], info["door_y"]) == (30, 25)
    red = info["goal_image"][..., 0].astype(float) * (info["goal_image"][..., 2] < 128)  # agent pixels, not walls
    y, x = np.unravel_index(red.argmax(), red.shape)
    assert (x, y) == (50, 40)
    assert np.allclose(info["goal_image"][40, 50], AGENT_RGB, atol=1)
    assert info["distance"] == pytest.approx(np.hypot(40, 30))
    with pytest.raises(ValueError, match="lies in a wall"):
        env.reset(options={"start": (30.0, 50.0), "wall_x": 30, "door_y": 25})


def test_random_walks_cross_the_door_often():
    rng = np.random.default_rng(0)
    walks = [random_walk(rng, steps=32) for _ in range(60)]
    crossings = sum(crossed_door(w["states"], Layout(*w["layout"])) for w in walks)
    assert 10 <= crossings <= 40
    w = walks[0]
    assert w["frames"].shape == (33, SIZE, SIZE, 3) and w["actions"].shape == (32, 2) and w["states"].shape == (33, 2)
    steps = np.linalg.norm(w["actions"], axis=1)
    assert 0.5 < steps.mean() < 1.5


def test_fast_walks_reach_the_step_limit_and_bump_walks_push_into_the_wall():
    rng = np.random.default_rng(0)
    fast = [random_walk(rng, steps=16, speed_range=(2.0, 2.45)) for _ in range(10)]
    lengths = np.concatenate([np.linalg.norm(w["actions"], axis=1) for w in fast])
    assert lengths.max() <= MAX_STEP + 1e-5 and lengths.mean() > 1.8
    # a latent step of 4 such steps spans what the planner asks for (up to 4 x 2.45 px)
    assert max(np.linalg.norm(w["states"][4] - w["states"][0]) for w in fast) > 7.0

    bumps = [random_walk(rng, steps=8, bump_fraction=1.0, door_fraction=0.0, kappa=50.0) for _ in range(20)]
    for w in bumps:
        layout = Layout(*w["layout"])
        x, y = w["states"][0]
        assert 2.0 <= abs(x - layout.wall_x) <= 10.0 and abs(y - layout.door_y) >= 7.0
        assert {layout.room(v) for v in w["states"][:, 0]} == {layout.room(x)}  # the wall stops every walk
    blocked = sum(int(np.all(w["states"][-1] == w["states"][-2])) for w in bumps)
    assert blocked >= 15  # heading straight at the wall, nearly all are pressed against it by the end

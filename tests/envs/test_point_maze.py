"""PointMaze from above (optional install): the oracle reaches the goal, random actions do not, the goal is shown
only as an image of the ball at the goal."""

from __future__ import annotations

import ctypes.util

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics", reason="PointMaze needs `pip install -e .[pointmaze]`")
if ctypes.util.find_library("EGL") is None:  # headless rendering; any other failure to render is a real failure
    pytest.skip("no EGL library for headless MuJoCo: apt-get install libegl1 libegl-mesa0", allow_module_level=True)

from jepa.envs.adapters import PointMazeAdapter  # noqa: E402
from jepa.envs.point_maze import MazeOracle, TopDownPointMaze  # noqa: E402


@pytest.fixture(scope="module")
def env() -> TopDownPointMaze:
    maze = TopDownPointMaze("UMaze", size=64)
    maze.reset(0)
    return maze


def ball_centre(image: np.ndarray) -> np.ndarray:
    """(row, col) centroid of the green ball's pixels."""
    r, g, b = (image[..., c].astype(int) for c in range(3))
    rows, cols = np.nonzero((g > 120) & (g > r + 40) & (g > b + 40))
    assert len(rows) > 0, "no ball in the image"
    return np.array([rows.mean(), cols.mean()])


def test_oracle_reaches_every_goal_and_random_actions_almost_none(env):
    oracle = MazeOracle(env.maze)
    reached = []
    for seed in range(20):
        _, info = env.reset(seed)
        for _ in range(300):
            _, info = env.step(oracle.act(info))
        reached.append(info["success"])
    assert all(reached)
    random_reached = 0
    for seed in range(10):
        _, info = env.reset(seed)
        rng = np.random.default_rng(seed)
        for _ in range(300):
            _, info = env.step(rng.uniform(-1, 1, 2))
        random_reached += info["success"]
    assert random_reached <= 2


def test_goal_is_an_image_of_the_ball_at_the_goal(env):
    image, info = env.reset(3)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    r, g, b = (image[..., c].astype(int) for c in range(3))
    assert not np.any((r > 150) & (g < 80) & (b < 80)), "the goal marker must be hidden"
    goal = env.goal_image()
    # top-down: x to the right, y up; the ball moves in the image as it moves in the maze
    moved = ball_centre(goal) - ball_centre(image)
    delta = info["goal"] - info["position"]
    pixels_per_unit = 64 / 5  # the 5 x 5 cells of UMaze fill the frame
    assert np.allclose(moved, [-delta[1] * pixels_per_unit, delta[0] * pixels_per_unit], atol=2.0)
    # rendering the goal leaves the simulation where it was
    assert np.array_equal(env.render(), image) and np.allclose(env.info()["position"], info["position"])


def test_adapter_state_and_steps(env):
    adapter = PointMazeAdapter("UMaze", size=64)
    adapter.reset(1)
    before = adapter.state()
    assert before.shape == (4,) and adapter.observation().shape == (64, 64, 3)
    for _ in range(5):
        adapter.step(np.array([1.0, 0.0]))
    assert adapter.state()[0] > before[0] and adapter.distance() > 0 and not adapter.success()


def test_random_episodes_convert_to_trajectory_windows(env, tmp_path):
    from jepa.data.trajectories import TrajectoryWindowDataset
    from jepa.data.trajectory_convert import convert_episodes
    from jepa.data.transforms import VideoTransform
    from jepa.envs.point_maze import random_episode

    rng = np.random.default_rng(0)
    for i in range(2):
        episode = random_episode(env, rng, steps=30)
        assert episode["frames"].shape == (31, 64, 64, 3) and episode["actions"].shape == (30, 2)
        assert np.abs(episode["actions"]).max() <= 1.0 and episode["states"].shape == (31, 4)
        # the held random forces move the ball (not a jitter in place)
        assert np.linalg.norm(episode["states"][-1, :2] - episode["states"][0, :2]) > 0.05
        np.savez(tmp_path / f"ep{i}.npz", **episode)
    summary = convert_episodes(str(tmp_path), str(tmp_path / "shards"), progress=False)
    assert (summary["episodes"], summary["action_dim"], summary["state_dim"]) == (2, 2, 4)
    windows = TrajectoryWindowDataset(
        str(tmp_path / "shards" / "shard-000000.tar"), 4, 10, transform=VideoTransform(64, training=False)
    )
    window = next(iter(windows))
    assert window["video"].shape == (3, 4, 64, 64) and window["actions"].shape == (3, 2)
    assert window["states"].shape == (4, 4)


def test_block_episodes_record_what_a_planner_repeating_each_action_sees(env):
    """frame_step=k records one frame per block of k control steps: the block's force held, its k forces summed into
    the action, and the frame and state those k steps reach (the same as stepping the force k times by hand)."""
    from jepa.envs.point_maze import random_episode

    episode = random_episode(env, np.random.default_rng(0), steps=35, frame_step=10)
    assert episode["frames"].shape == (4, 64, 64, 3) and episode["actions"].shape == (3, 2)
    assert episode["states"].shape == (4, 4) and np.abs(episode["actions"]).max() <= 10.0
    replay = np.random.default_rng(0)
    image, info = env.reset(int(replay.integers(2**31)))
    np.testing.assert_array_equal(image, episode["frames"][0])
    for block in range(3):
        force = replay.uniform(-1.0, 1.0, 2).astype(np.float32)
        np.testing.assert_allclose(10 * force, episode["actions"][block], rtol=1e-6)
        for _ in range(10):
            image, info = env.step(force)
        np.testing.assert_array_equal(image, episode["frames"][block + 1])
        np.testing.assert_allclose(info["position"], episode["states"][block + 1, :2], rtol=1e-5)

"""benchmarks/wall_rollouts.py: true walks the wall stops, nearest-pixel decoding, and the through-the-wall count."""

import numpy as np
import torch

from benchmarks import latent_geometry, wall_rollouts
from jepa.envs.two_rooms import MAX_STEP, Layout


def test_walks_into_the_wall_are_stopped_by_it():
    layout = Layout(wall_x=32, door_y=50)
    starts, actions, paths = wall_rollouts.walks_into_wall(np.random.default_rng(0), layout, 16, 30, drift=0.3)
    assert actions.shape == paths.shape == (16, 30, 2)
    assert np.linalg.norm(actions, axis=-1).max() <= MAX_STEP + 1e-9
    assert not any(layout.is_wall(x, y) for x, y in paths.reshape(-1, 2))
    # 30 full-speed steps toward the wall reach it from anywhere in a room: a walk that the door did not let through
    # ends pressed against the wall
    stayed = (paths[..., 0] < layout.wall_x).all(1) | (paths[..., 0] > layout.wall_x).all(1)
    assert stayed.sum() >= 12
    assert np.abs(paths[stayed, -1, 0] - layout.wall_x).max() < 8


def test_decode_picks_the_nearest_grid_latent():
    grid = latent_geometry.free_pixels(Layout(wall_x=32, door_y=18))
    assert len(grid) > 3000 and not np.any((grid[:, 0] == 32) & (np.abs(grid[:, 1] - 18) > 5))
    latents = torch.tensor([[10.2, 40.4], [50.6, 7.9]])
    decoded = wall_rollouts.decode(latents, torch.as_tensor(grid, dtype=torch.float32), grid)
    np.testing.assert_array_equal(decoded, [[10, 40], [51, 8]])


def test_through_wall_counts_only_walks_the_true_dynamics_kept_in_their_room():
    layout = Layout(wall_x=32, door_y=18)
    starts = np.array([[10.0, 40.0], [10.0, 40.0], [50.0, 40.0]])
    paths = np.array([[[20, 40], [28, 40]], [[20, 40], [28, 40]], [[40, 18], [25, 18]]], dtype=float)
    decoded = np.array([[[20, 40], [36, 40]], [[20, 40], [27, 40]], [[40, 18], [25, 18]]], dtype=float)
    # walk 0: the model puts the dot past the wall; walk 1: it does not; walk 2 really went through the door
    assert wall_rollouts.through_wall(layout, starts, paths, decoded) == (1, 2)

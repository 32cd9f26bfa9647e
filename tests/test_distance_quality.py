"""benchmarks/distance_quality.py's stand-in encoders: the dot's position read back from renders, and slow features
that tell the two rooms apart (the reference latents of BENCHMARKS.md); latent_geometry.py's path lengths and scores."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from benchmarks.distance_quality import DotPosition, SlowFeatures
from jepa.envs.two_rooms import Layout, render_batch


def renders(layout: Layout, points: np.ndarray) -> torch.Tensor:
    """(1, N, H, W, C) uint8 renders of the dot at (N, 2) points."""
    return torch.from_numpy(render_batch(np.array([layout.wall_x]), np.array([layout.door_y]), points[None]))


def test_dot_position_reads_the_agent_not_the_walls():
    layout = Layout(30, 20)
    points = np.array([[10.0, 40.0], [25.0, 40.0], [36.0, 12.5], [50.0, 50.0], [29.5, 20.0]])
    np.testing.assert_allclose(DotPosition().encode(renders(layout, points))[0].numpy(), points, atol=0.05)


def test_slow_features_separate_the_rooms_and_commute_scaling_weighs_that_most():
    layout = Layout(30, 20)
    env = SimpleNamespace(env=SimpleNamespace(layout=layout))
    left, right = np.array([[10.0, 50.0], [22.0, 40.0]]), np.array([[38.0, 50.0], [50.0, 40.0]])
    unit = SlowFeatures(env, features=4).encode(renders(layout, np.concatenate([left, right])))[0]
    room = unit[:, 0]
    assert (room[:2] * room[2:].mean() < 0).all() and (room[2:] * room[:2].mean() < 0).all()  # opposite signs
    scale = SlowFeatures(env, features=4, commute=True).feature_map(layout).flatten(0, 1).std(dim=0)
    assert scale[0] == scale.max() and scale[1] < 0.6 * scale[0]  # the room feature dominates the distance


def test_latent_geometry_tells_a_path_distance_from_a_straight_line():
    from benchmarks.latent_geometry import free_pixels, layout_geometry, path_lengths

    layout = Layout(30, 20)
    pixels = free_pixels(layout)
    index = {tuple(p): i for i, p in enumerate(pixels)}
    lengths = path_lengths(layout, np.array([index[(20, 50)]]))[0]
    assert lengths[index[(21, 50)]] == 1.0 and lengths[index[(21, 51)]] == np.sqrt(2)
    # across the wall, far from the door (rows 16-24), the path goes round through it: much longer than 20 px
    assert lengths[index[(40, 50)]] > 20 + 15
    env = SimpleNamespace(env=SimpleNamespace(layout=layout))
    position = layout_geometry(DotPosition(), layout, 16, np.random.default_rng(0))
    commute = layout_geometry(SlowFeatures(env, 16, commute=True), layout, 16, np.random.default_rng(0))
    assert position["euclidean_spearman"] > 0.99  # the position's distance is the straight line
    assert commute["cross_room_spearman"] > position["cross_room_spearman"] + 0.2  # and the commute time's the path
    assert commute["room_pc_corr"] > 0.9

"""The MPC loop drives a known linear latent world model to its goal, with CEM and with MPPI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa.planning.energy import goal_energy
from jepa.planning.mpc import MPCAgent, image_to_frames, run_episode
from jepa.planning.planners import ActionBounds, CEMPlanner, MPPIPlanner

SCALE = 20.0  # px value per unit of position in the toy images


class PointEnv:
    """A point in the plane; its image stores the position in two pixels (what the toy encoder reads back)."""

    def __init__(self, start, goal):
        self.start, self.goal = np.asarray(start, float), np.asarray(goal, float)
        self.pos = self.start.copy()

    @staticmethod
    def image(pos) -> np.ndarray:
        img = np.zeros((8, 8, 3), np.uint8)
        img[0, 0, :2] = np.round(np.asarray(pos) * SCALE + 128)
        return img

    def reset(self, seed):
        self.pos = self.start.copy()

    def observation(self):
        return self.image(self.pos)

    def goal_image(self):
        return self.image(self.goal)

    def state(self):
        return self.pos.astype(np.float32)

    def step(self, action):
        self.pos = self.pos + np.asarray(action, float)

    def distance(self):
        return float(np.linalg.norm(self.pos - self.goal))

    def success(self):
        return self.distance() < 0.2


class LinearWorldModel:
    """z = W pos (4 tokens of 8), and z' = z + W a: the true dynamics, in latent space."""

    def __init__(self):
        self.W = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))

    def encode(self, frames):  # (B, 3, T, H, W) -> (B, T, 4, 8)
        mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1)
        std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1)
        pixels = (frames[:, :, :, 0, 0] * std + mean) * 255.0  # (B, 3, T)
        pos = (pixels[:, :2] - 128.0) / SCALE
        return (pos.transpose(1, 2) @ self.W.T).unflatten(-1, (4, 8))

    def rollout(self, latents, actions, states=None):  # (B, 1, 4, 8), (B, L, 2) -> (B, L, 4, 8)
        steps = torch.cumsum(actions @ self.W.T, dim=1).unflatten(-1, (4, 8))
        return latents + steps


def test_image_to_frames_round_trips_through_the_toy_encoder():
    frames = image_to_frames(PointEnv.image([1.5, -2.0]), size=8)
    assert frames.shape == (1, 3, 1, 8, 8)
    z = LinearWorldModel().encode(frames)
    assert torch.allclose(z.flatten(2), (torch.tensor([1.5, -2.0]) @ LinearWorldModel().W.T).view(1, 1, 32), atol=1e-4)
    with pytest.raises(ValueError, match="RGB"):
        image_to_frames(np.zeros((4, 4), np.uint8), size=8)


def test_image_to_frames_matches_the_trajectory_data():
    from jepa.data.transforms import VideoTransform, even_frames
    from jepa.envs.two_rooms import TwoRoomsEnv

    image, _ = TwoRoomsEnv().reset(seed=3)  # 65 x 65, stored as 64 x 64 in the shards
    expected = VideoTransform(crop_size=32, training=False)(torch.from_numpy(even_frames(image[None]).copy()))
    torch.testing.assert_close(image_to_frames(image, size=32)[0], expected)
    assert image_to_frames(np.stack([image, image]), size=64).shape == (2, 3, 1, 64, 64)


def test_goal_energy_final_and_sum():
    predicted = torch.zeros(2, 3, 1, 2)
    predicted[0, :, 0, 0] = torch.tensor([3.0, 2.0, 1.0])
    goal = torch.zeros(1, 2)
    assert torch.allclose(goal_energy(predicted, goal, p=1, reduce="final"), torch.tensor([0.5, 0.0]))
    assert torch.allclose(goal_energy(predicted, goal, p=2, reduce="sum"), torch.tensor([7.0, 0.0]))
    with pytest.raises(ValueError, match="reduce"):
        goal_energy(predicted, goal, reduce="mean")


@pytest.mark.parametrize(
    "planner",
    [
        CEMPlanner(3, 2, samples=64, elites=8, iterations=4, init_std=0.5, bounds=ActionBounds(max_norm=1.0)),
        MPPIPlanner(
            3, 2, samples=64, iterations=4, noise_std=0.5, temperature=0.01, bounds=ActionBounds(max_norm=1.0)
        ),
    ],
    ids=["cem", "mppi"],
)
def test_closed_loop_reaches_the_goal(planner):
    env = PointEnv(start=[-3.0, 2.0], goal=[2.5, -1.5])  # 6.5 apart: at least 13 steps of 0.5
    # "sum" scores every step: with "final" any plan that only ends at the goal ties, and the first action dithers
    agent = MPCAgent(LinearWorldModel(), planner, img_size=8, action_repeat=2, max_env_action_norm=0.5, reduce="sum")
    result = run_episode(agent, env, seed=0, max_env_steps=40)
    assert result.success, result.distances
    assert result.final_distance < 0.2
    assert result.env_steps == 40 and result.plans == 20
    # distances are recorded after each plan's 2 environment steps of norm <= 0.5: no plan got closer by more than 1
    assert all(
        before - after <= 1.0 + 1e-6 for before, after in zip(result.distances, result.distances[1:], strict=False)
    )


def test_planning_imports_without_the_video_stack():
    """A planning machine needs torch and gymnasium, not the video decoders and shard readers of training."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('av', 'torchcodec', 'webdataset', 'braceexpand', 'lightning', 'hydra', 'wandb'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        "import jepa.checkpoints, jepa.planning.mpc, jepa.planning.adapters\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

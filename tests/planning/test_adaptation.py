"""Test-time adaptation of the predictor: a world model wrong about the action's sign fails in closed loop, fits the
episode's transitions with adaptation and then reaches the goal; each episode starts from the trained weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jepa.planning.adaptation import PredictorAdaptation
from jepa.planning.energy import GoalEnergy
from jepa.planning.mpc import MPCAgent, run_episode
from jepa.planning.planners import MPPIPlanner
from tests.planning.test_mpc import SCALE, PointEnv


class LinearPredictor(nn.Module):
    """z' = z + a B^T, one latent step per action; B starts wrong (x flipped) unless told otherwise."""

    def __init__(self, flip_x: bool = True) -> None:
        super().__init__()
        self.B = nn.Parameter(torch.diag(torch.tensor([-1.0 if flip_x else 1.0, 1.0])))

    def rollout(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return latents + torch.cumsum(actions @ self.B.T, dim=1)


class PositionWorldModel(nn.Module):
    """The latent is the point's position, read from the toy image; the predictor is learned (here: given)."""

    action_dim = 2

    def __init__(self, flip_x: bool = True) -> None:
        super().__init__()
        self.predictor = LinearPredictor(flip_x)

    def encode(self, observations: torch.Tensor) -> torch.Tensor:  # (B, T, H, W, 3) uint8 -> (B, T, 2)
        return (observations[:, :, 0, 0, :2].float() - 128.0) / SCALE

    def rollout(self, latents, actions, states=None):  # (B, 1, 2), (B, L, 2) -> (B, L, 2)
        return self.predictor.rollout(latents, actions)


def agent(adapt_steps: int) -> MPCAgent:
    planner = MPPIPlanner(4, samples=64, iterations=4, noise_std=0.5, temperature=0.01)
    model = PositionWorldModel().requires_grad_(False)  # as launch/plan.py loads it: frozen
    return MPCAgent(model, planner, GoalEnergy(p=2), replan_every=2, adapt_steps=adapt_steps, adapt_lr=0.1)


def test_fitting_the_episode_finds_the_true_dynamics():
    model = PositionWorldModel()
    adaptation = PredictorAdaptation(model, steps=200, lr=0.05)
    adaptation.reset()
    latent = torch.zeros(1, 1, 2)
    for action in ([0.5, 0.0], [0.0, -0.5], [0.3, 0.3]):
        actions = torch.tensor([[action, action]])  # (1, 2, 2): two steps of the same action
        adaptation.record(latent, actions, latent + actions.sum(1, keepdim=True))
    before = float(adaptation.loss().detach())
    adaptation.update()
    assert before > 0.1 and float(adaptation.loss().detach()) < 1e-4
    assert torch.allclose(model.predictor.B, torch.eye(2), atol=1e-2)
    adaptation.reset()  # a new episode: the trained (wrong) weights and no transitions
    assert torch.equal(model.predictor.B, torch.diag(torch.tensor([-1.0, 1.0]))) and not adaptation.transitions


def test_a_wrong_model_reaches_the_goal_only_when_it_adapts():
    env = PointEnv(start=[-2.0, 1.0], goal=[2.0, -1.0])  # 4.5 apart: 9 steps of 0.5
    frozen = run_episode(agent(adapt_steps=0), env, seed=0, max_env_steps=40)
    assert not frozen.success and frozen.final_distance > 3.0, frozen.distances  # it pushes x the wrong way
    adapting = agent(adapt_steps=20)
    adapted = run_episode(adapting, env, seed=0, max_env_steps=40)
    assert adapted.success, adapted.distances
    assert len(adapting.adaptation.transitions) == 19  # every executed chunk but the last
    # the next episode starts from the trained weights again, and the frozen parameters stay frozen
    adapting.begin(env, seed=1)
    assert adapting.world_model.predictor.B[0, 0] == -1.0
    assert not any(p.requires_grad for p in adapting.world_model.parameters())


def test_a_world_model_without_a_predictor_cannot_adapt():
    class Fixed:
        action_dim = 2

        def encode(self, observations):
            return observations.float().mean((2, 3, 4))[..., None]

        def rollout(self, latents, actions, states=None):
            return latents.expand(-1, actions.size(1), -1)

    with pytest.raises(ValueError, match="adapt_steps=0"):
        MPCAgent(Fixed(), MPPIPlanner(2), adapt_steps=5)

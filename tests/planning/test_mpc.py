"""The MPC loop drives a known linear latent world model to its goal with CEM, MPPI and the gradient planner;
random and oracle policies run through the same loop; the planning seam stays free of the data and env layers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from jepa.planning.energy import GoalEnergy, goal_energy
from jepa.planning.mpc import MPCAgent, OraclePolicy, RandomPolicy, run_episode
from jepa.planning.planners import ActionBounds, CEMPlanner, GradientPlanner, MPPIPlanner

SCALE = 20.0  # px value per unit of position in the toy images


class PointEnv:
    """A point in the plane; its image stores the position in two pixels (what the toy encoder reads back)."""

    action_space = gym.spaces.Box(-0.5, 0.5, (2,), dtype=np.float32)
    max_action_norm = 0.5

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
        action = np.asarray(action, float)
        norm = np.linalg.norm(action)
        self.pos = self.pos + (action * min(1.0, self.max_action_norm / norm) if norm > 0 else action)

    def distance(self):
        return float(np.linalg.norm(self.pos - self.goal))

    def success(self):
        return self.distance() < 0.2

    def oracle_action(self):
        return np.clip(self.goal - self.pos, -0.35, 0.35)


class LinearWorldModel:
    """z = W pos (4 tokens of 8), and z' = z + W a: the true dynamics, in latent space. It reads raw images, as the
    environment renders them (the world model owns its preprocessing)."""

    action_dim = 2

    def __init__(self):
        self.W = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))

    def encode(self, observations):  # (B, T, H, W, 3) uint8 -> (B, T, 4, 8)
        pos = (observations[:, :, 0, 0, :2].float() - 128.0) / SCALE
        return (pos @ self.W.T).unflatten(-1, (4, 8))

    def rollout(self, latents, actions, states=None):  # (B, 1, 4, 8), (B, L, 2) -> (B, L, 4, 8)
        steps = torch.cumsum(actions @ self.W.T, dim=1).unflatten(-1, (4, 8))
        return latents + steps


def test_goal_energy_final_sum_and_mean():
    predicted = torch.zeros(2, 3, 1, 2)
    predicted[0, :, 0, 0] = torch.tensor([3.0, 2.0, 1.0])
    goal = torch.zeros(1, 2)
    assert torch.allclose(goal_energy(predicted, goal, p=1, reduce="final"), torch.tensor([0.5, 0.0]))
    assert torch.allclose(goal_energy(predicted, goal, p=2, reduce="sum"), torch.tensor([7.0, 0.0]))
    assert torch.allclose(GoalEnergy(2, "mean")(predicted, goal), torch.tensor([7.0 / 3, 0.0]))
    # vector latents (S, L, D) score the same way
    assert torch.allclose(goal_energy(predicted[:, :, 0], goal[0], p=2, reduce="sum"), torch.tensor([7.0, 0.0]))
    with pytest.raises(ValueError, match="reduce"):
        goal_energy(predicted, goal, reduce="max")


def test_bounds_come_from_the_environment():
    bounds = ActionBounds.from_env(PointEnv([0, 0], [1, 1]), action_repeat=3)
    assert bounds.low == (-1.5, -1.5) and bounds.high == (1.5, 1.5) and bounds.max_norm == 1.5
    planner = CEMPlanner(4, samples=8, elites=2)
    with pytest.raises(RuntimeError, match="configure"):
        planner.plan(lambda a: a.square().sum((1, 2)))


PLANNERS = {
    "cem": lambda: CEMPlanner(3, samples=64, elites=8, iterations=4, init_std=0.5),
    "mppi": lambda: MPPIPlanner(3, samples=64, iterations=4, noise_std=0.5, temperature=0.01),
    "gradient": lambda: GradientPlanner(3, iterations=20, lr=0.1, samples=4, init_std=0.3),
}


@pytest.mark.parametrize("name", list(PLANNERS))
def test_closed_loop_reaches_the_goal(name):
    env = PointEnv(start=[-3.0, 2.0], goal=[2.5, -1.5])  # 6.5 apart: at least 13 steps of 0.5
    # "sum" scores every step: with "final" any plan that only ends at the goal ties, and the first action dithers
    agent = MPCAgent(LinearWorldModel(), PLANNERS[name](), GoalEnergy(p=1, reduce="sum"), action_repeat=2)
    result = run_episode(agent, env, seed=0, max_env_steps=40)
    assert result.success, result.distances
    assert result.final_distance < 0.2
    assert result.env_steps == 40 and result.plans == 20
    # the planner was configured from the environment: a planned action covers 2 steps of norm <= 0.5
    assert agent.planner.bounds.max_norm == 1.0
    assert all(
        before - after <= 1.0 + 1e-6 for before, after in zip(result.distances, result.distances[1:], strict=False)
    )


def test_replanning_every_k_steps_executes_k_planned_actions():
    env = PointEnv(start=[-3.0, 2.0], goal=[2.5, -1.5])
    agent = MPCAgent(
        LinearWorldModel(),
        CEMPlanner(4, samples=32, elites=4, iterations=3, init_std=0.5),
        GoalEnergy(p=1),
        action_repeat=1,
        replan_every=3,
    )
    result = run_episode(agent, env, seed=0, max_env_steps=30)
    assert result.plans == 10 and result.success
    with pytest.raises(ValueError, match="exceeds the planner's horizon"):
        MPCAgent(LinearWorldModel(), CEMPlanner(2), replan_every=3)


def test_baselines_run_through_the_same_loop():
    env = PointEnv(start=[-3.0, 2.0], goal=[2.5, -1.5])
    oracle = run_episode(OraclePolicy(), env, seed=0, max_env_steps=40)
    rand = run_episode(RandomPolicy(), env, seed=0, max_env_steps=40)
    assert oracle.success and not rand.success and rand.env_steps == 40
    assert rand.summary()["plans"] == 40  # one decision per step


def test_a_model_of_several_frames_per_latent_sees_the_frames_it_planned_from():
    """A world model with context_frames=2 gets the previous planning frame with the current one (a still scene at
    the start and for the goal), and an agent that would skip frames between plans is refused."""

    class TwoFrameModel(LinearWorldModel):
        context_frames = 2
        seen: list = []

        def encode(self, observations):  # latent of the newest frame; records the frame pairs it was given
            assert observations.shape[1] == 2
            self.seen.append((observations[0, :, 0, 0, :2].float() - 128.0) / SCALE)
            return super().encode(observations[:, 1:])

    env = PointEnv(start=[-3.0, 2.0], goal=[2.5, -1.5])
    model = TwoFrameModel()
    agent = MPCAgent(model, CEMPlanner(3, samples=32, elites=4, iterations=3, init_std=0.5), GoalEnergy(p=1))
    result = run_episode(agent, env, seed=0, max_env_steps=3)
    goal, first, second, third = model.seen  # the goal is encoded first, then one pair per plan
    torch.testing.assert_close(goal[0], goal[1])
    torch.testing.assert_close(first[0], first[1])  # the episode's first frame: still
    torch.testing.assert_close(second[0], first[1])  # then the frame one planned action earlier
    torch.testing.assert_close(third[0], second[1])
    assert result.plans == 3 and not torch.equal(second[0], second[1])
    with pytest.raises(ValueError, match="set agent.replan_every=1"):
        MPCAgent(model, CEMPlanner(4), replan_every=2)


def test_a_world_model_of_another_action_width_is_refused():
    class Wide(LinearWorldModel):
        action_dim = 7

    agent = MPCAgent(Wide(), CEMPlanner(2))
    with pytest.raises(ValueError, match="7-D actions but the environment's are 2-D"):
        run_episode(agent, PointEnv([0, 0], [1, 1]), seed=0, max_env_steps=2)


def test_planning_imports_without_the_video_stack_data_or_envs():
    """A planning machine needs torch, not the video decoders and shard readers of training; and the planning seam
    imports neither the data layer nor the environments (they plug in from outside)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('av', 'torchcodec', 'webdataset', 'braceexpand', 'lightning', 'hydra', 'wandb'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        "import jepa.checkpoints, jepa.planning.mpc, jepa.planning.planners, jepa.planning.energy\n"
        "import jepa.models.world_model\n"
        "leaked = sorted(m for m in sys.modules if m.startswith(('jepa.data', 'jepa.envs', 'jepa.tasks')))\n"
        "assert not leaked, leaked\n"
        "import jepa.envs.adapters\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

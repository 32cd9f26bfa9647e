"""Receding-horizon MPC toward a goal image with any latent world model and any gymnasium environment.

The seams (DESIGN.md):
- `LatentWorldModel`: `encode(observations)`, (B, T, H, W, C) uint8 images exactly as the environment renders them
  -> (B, T, *Z) latents (the world model owns its pixel preprocessing), and `rollout(latents, actions, states)`,
  (B, T0, *Z) context latents and (B, T0 - 1 + L, A) actions -> (B, L, *Z) predictions. `JEPAWorldModel` (jointly
  trained) and `ACWorldModel` (V-JEPA 2-AC) have both; plug in your own.
- `EnvAdapter`: reset to a seeded episode, the observation and goal images, the true state, one step, the distance to
  the goal and the success test, plus the environment's `action_space` and `max_action_norm` (the planner is
  configured from them) and a scripted `oracle_action` (`jepa.envs.adapters` has Two Rooms and PointMaze).
- `Policy`: `begin(env, seed, goal_image)` then `act(env) -> [environment actions]`. `MPCAgent` (a planner on a
  world model's latents), `RandomPolicy` and `OraclePolicy` all run through the same `run_episode` loop.

One planned action covers `action_repeat` environment steps (the world model's latent step): it is the displacement
summed over them, executed in equal steps. The agent re-plans every `replan_every` planned actions.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from jepa.planning.energy import GoalEnergy
from jepa.planning.planners import ActionBounds, PlanResult, shift_plan


class LatentWorldModel(Protocol):
    def encode(self, observations: torch.Tensor) -> torch.Tensor: ...

    def rollout(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None
    ) -> torch.Tensor: ...


class Planner(Protocol):
    horizon: int

    def configure(self, action_dim: int, bounds: ActionBounds | None = None) -> None: ...

    def plan(
        self, cost: Any, init: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> PlanResult: ...


class EnvAdapter(Protocol):
    """What the MPC loop needs from an environment."""

    action_space: Any  # one step's box (`low`, `high`, `shape`), e.g. a gymnasium Box
    max_action_norm: float | None  # norm limit of one step's action, or None

    def reset(self, seed: int) -> None: ...

    def observation(self) -> np.ndarray: ...  # (H, W, 3) uint8 RGB

    def goal_image(self) -> np.ndarray: ...  # (H, W, 3) uint8 RGB

    def state(self) -> np.ndarray: ...  # (S,) proprioceptive state

    def step(self, action: np.ndarray) -> None: ...

    def distance(self) -> float: ...  # true distance to the goal

    def success(self) -> bool: ...

    def oracle_action(self) -> np.ndarray: ...  # the scripted oracle's next action (true state)


class Policy(Protocol):
    def begin(self, env: EnvAdapter, seed: int, goal_image: np.ndarray | None = None) -> None: ...

    def act(self, env: EnvAdapter) -> list[np.ndarray]: ...


class LatentCost:
    """`(S, H, A) -> (S,)` energy of action sequences: roll the world model out from the current latent and score
    the predicted latents against the goal latent with `energy`. Differentiable in the actions (the gradient planner
    descends it; the sampling planners call it under `torch.no_grad`)."""

    def __init__(
        self,
        world_model: LatentWorldModel,
        energy: Any,
        latent: torch.Tensor,
        goal: torch.Tensor,
        state: torch.Tensor | None = None,
    ) -> None:
        self.world_model, self.energy, self.latent, self.goal, self.state = world_model, energy, latent, goal, state
        self.device = latent.device

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        S = actions.size(0)
        latents = self.latent.expand(S, *self.latent.shape[1:])
        states = None if self.state is None else self.state.expand(S, *self.state.shape[1:])
        predicted = self.world_model.rollout(latents, actions, states)  # (S, H, *Z)
        return self.energy(predicted, self.goal)


@dataclass
class EpisodeResult:
    """One episode: success, final true distance, timings, and the frames for an image strip."""

    success: bool
    final_distance: float
    env_steps: int
    plans: int
    seconds: float
    seconds_per_plan: float
    distances: list[float] = field(default_factory=list)
    start_image: np.ndarray | None = None
    goal_image: np.ndarray | None = None
    final_image: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        keys = ("success", "final_distance", "env_steps", "plans", "seconds", "seconds_per_plan")
        return {k: getattr(self, k) for k in keys}


class MPCAgent:
    """Plans with `planner` on `world_model`'s latents toward a goal image and acts in receding horizon.

    Args:
        world_model: the `LatentWorldModel` (frozen).
        planner: `CEMPlanner`, `MPPIPlanner` or `GradientPlanner` (its horizon is the lookahead in latent steps);
            configured from each episode's environment (`ActionBounds.from_env`).
        energy: `(predicted (S, L, *Z), goal (*Z)) -> (S,)`, e.g. `GoalEnergy(p=2, reduce="sum")` or `HeadEnergy`.
        action_repeat: environment steps per planned action (the world model's frame step; 1 for a model trained on
            every step).
        replan_every: planned actions executed before the next plan (1 = eb_jepa's protocol). A world model whose
            latents see several frames (`context_frames` > 1) needs 1: the agent keeps the frames it planned from as
            that context, one planned action apart.
        warm_start: start each plan from the previous one shifted by the executed steps (else from zeros).
        use_states: pass the environment's true state to the world model (for models trained with states).
        device: where the world model runs.
    """

    def __init__(
        self,
        world_model: LatentWorldModel,
        planner: Planner,
        energy: Any = None,
        action_repeat: int = 1,
        replan_every: int = 1,
        warm_start: bool = True,
        use_states: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        if action_repeat < 1 or replan_every < 1:
            raise ValueError(f"action_repeat and replan_every must be >= 1, got {action_repeat}, {replan_every}")
        if replan_every > planner.horizon:
            raise ValueError(f"replan_every={replan_every} exceeds the planner's horizon {planner.horizon}")
        self.context_frames = int(getattr(world_model, "context_frames", 1))
        if self.context_frames > 1 and replan_every != 1:
            raise ValueError(
                f"this world model encodes {self.context_frames} consecutive frames one planned action apart, so the "
                f"agent must see every one: set agent.replan_every=1 (got {replan_every})"
            )
        self.world_model, self.planner = world_model, planner
        self.energy = energy if energy is not None else GoalEnergy()
        self.action_repeat, self.replan_every = action_repeat, replan_every
        self.warm_start, self.use_states = warm_start, use_states
        self.device = torch.device(device)
        self.max_env_action_norm: float | None = None
        self._plan: torch.Tensor | None = None
        self._goal: torch.Tensor | None = None
        self._generator: torch.Generator | None = None
        self._frames: deque[np.ndarray] = deque(maxlen=self.context_frames)  # the latest observations, oldest first
        self.plans, self.plan_seconds = 0, 0.0

    def encode(self, observation: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 image, or (n, H, W, 3) consecutive frames, oldest first -> (1, 1, *Z) latent.

        A world model with `context_frames` = k encodes the last k frames; fewer are padded with the oldest one, so
        a single image (a goal, an episode's first frame) reads as a still scene."""
        frames = np.asarray(observation)
        frames = frames[None] if frames.ndim == 3 else frames
        k = self.context_frames
        frames = np.concatenate([np.repeat(frames[:1], max(k - len(frames), 0), axis=0), frames[-k:]])
        with torch.no_grad():
            return self.world_model.encode(torch.from_numpy(np.ascontiguousarray(frames))[None].to(self.device))

    def begin(self, env: EnvAdapter, seed: int, goal_image: np.ndarray | None = None) -> None:
        """Configures the planner from `env`, encodes the goal (the episode's, or `goal_image`), forgets the plan."""
        action_dim = int(np.prod(env.action_space.shape))
        model_dim = getattr(self.world_model, "action_dim", action_dim)
        if model_dim != action_dim:
            raise ValueError(f"the world model takes {model_dim}-D actions but the environment's are {action_dim}-D")
        self.planner.configure(action_dim, ActionBounds.from_env(env, self.action_repeat))
        self.max_env_action_norm = env.max_action_norm
        self.set_goal(env.goal_image() if goal_image is None else goal_image)
        self._generator = torch.Generator().manual_seed(seed)
        self._frames.clear()
        self.plans, self.plan_seconds = 0, 0.0

    def set_goal(self, goal_image: np.ndarray) -> None:
        self._goal = self.encode(goal_image)[0, 0]
        self._plan = None

    def cost(self, image: np.ndarray, state: np.ndarray | None) -> LatentCost:
        """The energy of action sequences from this observation (an image or recent frames, as `encode` takes; and
        state) toward the goal set by `set_goal`."""
        if self._goal is None:
            raise RuntimeError("call begin(env, seed) or set_goal(goal_image) before planning")
        states = None
        if self.use_states and state is not None:
            states = torch.as_tensor(state, dtype=torch.float32, device=self.device).view(1, 1, -1)
        return LatentCost(self.world_model, self.energy, self.encode(image), self._goal, states)

    def plan(
        self, image: np.ndarray, state: np.ndarray | None, generator: torch.Generator | None = None
    ) -> PlanResult:
        """Plans from the current observation; returns the whole (H, A) plan."""
        start = time.perf_counter()
        cost = self.cost(image, state)
        init = shift_plan(self._plan, self.replan_every) if (self.warm_start and self._plan is not None) else None
        result = self.planner.plan(cost, init, generator if generator is not None else self._generator)
        self._plan = result.actions.detach().cpu()
        self.plans += 1
        self.plan_seconds += time.perf_counter() - start
        return result

    def env_actions(self, action: torch.Tensor) -> list[np.ndarray]:
        """One planned action -> `action_repeat` equal environment actions (each within the per-step norm)."""
        step = action.detach().cpu().numpy().astype(np.float64) / self.action_repeat
        if self.max_env_action_norm is not None:
            norm = float(np.linalg.norm(step))
            if norm > self.max_env_action_norm:
                step = step * (self.max_env_action_norm / norm)
        return [step.astype(np.float32)] * self.action_repeat

    def act(self, env: EnvAdapter) -> list[np.ndarray]:
        """Plans from the environment's observation and returns the environment actions of the first
        `replan_every` planned actions."""
        self._frames.append(env.observation())
        result = self.plan(np.stack(self._frames), env.state())
        return [a for planned in result.actions[: self.replan_every] for a in self.env_actions(planned)]


class RandomPolicy:
    """Uniformly random actions: within the norm limit (a uniform direction, a length uniform up to the limit) where
    the environment has one, else uniform in its box."""

    def begin(self, env: EnvAdapter, seed: int, goal_image: np.ndarray | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, env: EnvAdapter) -> list[np.ndarray]:
        low, high = np.asarray(env.action_space.low, np.float64), np.asarray(env.action_space.high, np.float64)
        if env.max_action_norm is not None:
            direction = self.rng.normal(size=low.shape)
            action = direction / np.linalg.norm(direction) * self.rng.uniform(0.0, env.max_action_norm)
            action = np.clip(action, low, high)
        else:
            action = self.rng.uniform(low, high)
        return [action.astype(np.float32)]


class OraclePolicy:
    """The environment's scripted oracle (true state): the upper reference of every planning table."""

    def begin(self, env: EnvAdapter, seed: int, goal_image: np.ndarray | None = None) -> None:
        pass

    def act(self, env: EnvAdapter) -> list[np.ndarray]:
        return [env.oracle_action()]


def run_episode(
    policy: Policy,
    env: EnvAdapter,
    seed: int,
    max_env_steps: int,
    stop_on_success: bool = False,
    goal_image: np.ndarray | None = None,
) -> EpisodeResult:
    """Runs one seeded episode: ask the policy for actions, execute them, repeat until `max_env_steps`.

    `goal_image` replaces the episode's own goal image for a planner (its success and distance then refer to the
    env's goal).
    """
    env.reset(seed)
    policy.begin(env, seed, goal_image)
    start = env.observation()
    goal = env.goal_image() if goal_image is None else goal_image
    steps, decisions, distances = 0, 0, [env.distance()]
    t0 = time.perf_counter()
    while steps < max_env_steps:
        actions = policy.act(env)
        decisions += 1
        for action in actions:
            if steps >= max_env_steps:
                break
            env.step(action)
            steps += 1
        distances.append(env.distance())
        if stop_on_success and env.success():
            break
    seconds = time.perf_counter() - t0
    plans = getattr(policy, "plans", decisions)
    plan_seconds = getattr(policy, "plan_seconds", 0.0)
    return EpisodeResult(
        success=env.success(),
        final_distance=env.distance(),
        env_steps=steps,
        plans=plans,
        seconds=seconds,
        seconds_per_plan=plan_seconds / max(plans, 1),
        distances=distances,
        start_image=start,
        goal_image=goal,
        final_image=env.observation(),
    )

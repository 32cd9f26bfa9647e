"""Receding-horizon MPC toward a goal image with any latent world model and any gymnasium environment.

The world-model seam is two methods (`jepa.models.ac_predictor.ACWorldModel` has both; plug in your own):
- `encode(observations)`: (B, C, T, H, W) float frames -> (B, T, N, D) latents;
- `rollout(latents, actions, states)`: (B, 1, N, D) latents of the current frame, (B, L, A) actions, (B, 1, S)
  states or None -> (B, L, N, D) predicted latents.

The environment seam is an `EnvAdapter`: reset to an episode, the observation as an image, the goal image, the true
state, one environment step, the distance to the goal and the success test.

One planned action covers `action_repeat` environment steps (the world model's latent step, e.g. Two Rooms'
`frame_step` 4): it is the displacement summed over those steps, executed as `action_repeat` equal steps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from jepa.data.transforms import VideoTransform, even_frames
from jepa.planning.energy import embedding_energy, goal_energy
from jepa.planning.planners import PlanResult, shift_plan


class LatentWorldModel(Protocol):
    def encode(self, observations: torch.Tensor) -> torch.Tensor: ...

    def rollout(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None
    ) -> torch.Tensor: ...


class Planner(Protocol):
    horizon: int

    def plan(
        self, cost: Any, init: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> PlanResult: ...


class EnvAdapter(Protocol):
    """What the MPC loop needs from an environment."""

    def reset(self, seed: int) -> None: ...

    def observation(self) -> np.ndarray: ...  # (H, W, 3) uint8 RGB

    def goal_image(self) -> np.ndarray: ...  # (H, W, 3) uint8 RGB

    def state(self) -> np.ndarray: ...  # (S,) proprioceptive state the world model was trained with

    def step(self, action: np.ndarray) -> None: ...

    def distance(self) -> float: ...  # true distance to the goal

    def success(self) -> bool: ...


def image_to_frames(images: np.ndarray | Sequence[np.ndarray], size: int) -> torch.Tensor:
    """(H, W, 3) uint8 image(s) -> (B, 3, 1, size, size) normalised frames, exactly as the trajectory data sees them.

    As `jepa.data.trajectories`: odd heights/widths lose their last row/column (the shards' mp4 needs even sizes),
    then the evaluation view of `VideoTransform` (the centered square, resized to `size`, ImageNet normalisation).
    """
    batch = np.asarray(images)
    batch = batch[None] if batch.ndim == 3 else batch
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) RGB image(s), got shape {batch.shape}")
    frames = torch.from_numpy(np.ascontiguousarray(even_frames(batch.astype(np.uint8))))
    transform = VideoTransform(crop_size=size, training=False)
    return torch.stack([transform(frame.unsqueeze(0)) for frame in frames])


class LatentCost:
    """`(S, H, A) -> (S,)` energy of action sequences: roll the world model out from the current latent and score
    the predicted latents against the goal latent with `goal_energy`, or, given an energy `head`
    (`jepa.models.energy_head.LatentEnergyHead`), their embeddings against the goal's with `embedding_energy`, plus
    `latent_weight` times `goal_energy`: the head's slow features guide from afar, the raw latents, sharp within
    about a patch, place the agent on the goal."""

    def __init__(
        self,
        world_model: LatentWorldModel,
        latent: torch.Tensor,
        goal: torch.Tensor,
        state: torch.Tensor | None = None,
        p: int = 1,
        reduce: str = "final",
        head: torch.nn.Module | None = None,
        latent_weight: float = 0.0,
    ) -> None:
        self.world_model, self.latent, self.goal, self.state = world_model, latent, goal, state
        self.p, self.reduce, self.head, self.latent_weight = p, reduce, head, latent_weight
        with torch.no_grad():
            self.goal_embedding = None if head is None else head(goal)  # (K,)
        self.device = latent.device

    @torch.no_grad()
    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        S = actions.size(0)
        latents = self.latent.expand(S, *self.latent.shape[1:])
        states = None if self.state is None else self.state.expand(S, *self.state.shape[1:])
        predicted = self.world_model.rollout(latents, actions, states)  # (S, H, N, D)
        if self.head is None:
            return goal_energy(predicted, self.goal, self.p, self.reduce)
        energy = embedding_energy(self.head(predicted), self.goal_embedding, self.reduce)
        if self.latent_weight:
            energy = energy + self.latent_weight * goal_energy(predicted, self.goal, self.p, self.reduce)
        return energy


@dataclass
class EpisodeResult:
    """One MPC episode: success, final true distance, timings, and the frames for an image strip."""

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
        world_model: the `LatentWorldModel`.
        planner: `CEMPlanner` or `MPPIPlanner` (its horizon is the lookahead in latent steps).
        img_size: the world model's frame size.
        action_repeat: environment steps per planned action (the world model's frame step).
        max_env_action_norm: per-environment-step norm limit (Two Rooms 2.45); the planned action is split evenly.
        use_states: pass the adapter's true state to the world model (as it was trained with states).
        p, reduce: the `goal_energy` used as cost.
        energy_head: a `LatentEnergyHead` trained on the world model's encoder: the cost is then the distance of
            the predicted latents' embeddings to the goal's (`embedding_energy`). Needed where the raw latent
            distance stops tracking the agent's distance (Two Rooms, BENCHMARKS.md).
        latent_weight: with `energy_head`, add this times the raw `goal_energy` (Two Rooms: 300, which puts the
            raw term's ~0.004 range near the goal on the scale of the head's distances).
        warm_start: start each plan from the previous one shifted by one step (else from zeros).
        device: where the world model runs.
    """

    def __init__(
        self,
        world_model: LatentWorldModel,
        planner: Planner,
        img_size: int,
        action_repeat: int = 1,
        max_env_action_norm: float | None = None,
        use_states: bool = True,
        p: int = 1,
        reduce: str = "final",
        warm_start: bool = True,
        device: str | torch.device = "cpu",
        energy_head: torch.nn.Module | None = None,
        latent_weight: float = 0.0,
    ) -> None:
        self.world_model, self.planner = world_model, planner
        self.latent_weight = latent_weight
        self.energy_head = None if energy_head is None else energy_head.to(device).eval()
        self.img_size, self.action_repeat = img_size, action_repeat
        self.max_env_action_norm = max_env_action_norm
        self.use_states, self.p, self.reduce, self.warm_start = use_states, p, reduce, warm_start
        self.device = torch.device(device)
        self._plan: torch.Tensor | None = None
        self._goal: torch.Tensor | None = None

    def encode(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 1, N, D) latent."""
        with torch.no_grad():
            return self.world_model.encode(image_to_frames(image, self.img_size).to(self.device))

    def set_goal(self, goal_image: np.ndarray) -> None:
        self._goal = self.encode(goal_image)[0, 0]
        self._plan = None

    def cost(self, image: np.ndarray, state: np.ndarray | None) -> LatentCost:
        """The energy of action sequences from this observation (and state) toward the goal set by `set_goal`."""
        if self._goal is None:
            raise RuntimeError("call set_goal(goal_image) before planning")
        states = None
        if self.use_states and state is not None:
            states = torch.as_tensor(state, dtype=torch.float32, device=self.device).view(1, 1, -1)
        return LatentCost(
            self.world_model,
            self.encode(image),
            self._goal,
            states,
            self.p,
            self.reduce,
            self.energy_head,
            self.latent_weight,
        )

    def plan(
        self, image: np.ndarray, state: np.ndarray | None, generator: torch.Generator | None = None
    ) -> PlanResult:
        """Plans from the current observation; returns the whole (H, A) plan."""
        cost = self.cost(image, state)
        init = shift_plan(self._plan, 1) if (self.warm_start and self._plan is not None) else None
        result = self.planner.plan(cost, init, generator)
        self._plan = result.actions.detach().cpu()
        return result

    def env_actions(self, action: torch.Tensor) -> list[np.ndarray]:
        """One planned action -> `action_repeat` equal environment actions (each within the per-step norm)."""
        step = action.detach().cpu().numpy().astype(np.float64) / self.action_repeat
        if self.max_env_action_norm is not None:
            norm = float(np.linalg.norm(step))
            if norm > self.max_env_action_norm:
                step = step * (self.max_env_action_norm / norm)
        return [step.astype(np.float32)] * self.action_repeat


def run_episode(
    agent: MPCAgent,
    env: EnvAdapter,
    seed: int,
    max_env_steps: int,
    stop_on_success: bool = False,
    goal_image: np.ndarray | None = None,
) -> EpisodeResult:
    """Runs one seeded episode: plan, execute the first planned action, observe, re-plan, until `max_env_steps`.

    `goal_image` replaces the episode's own goal image (its success and distance then refer to the env's goal).
    """
    env.reset(seed)
    generator = torch.Generator().manual_seed(seed)
    start = env.observation()
    goal = env.goal_image() if goal_image is None else goal_image
    agent.set_goal(goal)
    steps, plans, plan_seconds, distances = 0, 0, 0.0, [env.distance()]
    t0 = time.perf_counter()
    while steps < max_env_steps:
        t = time.perf_counter()
        result = agent.plan(env.observation(), env.state(), generator)
        plan_seconds += time.perf_counter() - t
        plans += 1
        for action in agent.env_actions(result.actions[0]):
            if steps >= max_env_steps:
                break
            env.step(action)
            steps += 1
        distances.append(env.distance())
        if stop_on_success and env.success():
            break
    seconds = time.perf_counter() - t0
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

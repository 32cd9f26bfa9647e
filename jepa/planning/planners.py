"""Planners over action sequences: the cross-entropy method (CEM), MPPI, and gradient descent through the rollout.

Every planner minimises a cost over (H, A) action sequences, respects per-dimension bounds and a per-step norm
limit, and warm-starts from the previous plan shifted by the steps already executed (`shift_plan`). The cost is any
callable `(S, H, A) -> (S,)`: a world model's energy (`jepa.planning.mpc.LatentCost`) or an analytic function in
tests. CEM and MPPI sample S candidates at once (one batched call of the cost per iteration); the gradient planner
descends the cost of a few candidates through the differentiable rollout.

Like stable-worldmodel's `Solver.configure(action_space, ...)`, a planner is configured from the environment: its
constructor holds the search settings, `configure(action_dim, bounds)` the environment's action width and limits
(`ActionBounds.from_env`), so no config repeats an environment's numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Cost = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ActionBounds:
    """Limits of one action: per-dimension [low, high] and a maximum Euclidean norm (None = unbounded).

    Two Rooms over a latent step of k control steps: max_norm = 2.45 * k (a displacement summed over the step).
    """

    low: float | tuple[float, ...] | None = None
    high: float | tuple[float, ...] | None = None
    max_norm: float | None = None

    @classmethod
    def from_env(cls, env, action_repeat: int = 1) -> ActionBounds:
        """The limits of one planned action that covers `action_repeat` environment steps of `env` (an `EnvAdapter`:
        `action_space` with `low`/`high`, and `max_action_norm` per step or None): each limit times the repeat."""
        space = env.action_space
        low = tuple(float(v) * action_repeat for v in space.low.flatten())
        high = tuple(float(v) * action_repeat for v in space.high.flatten())
        norm = getattr(env, "max_action_norm", None)
        return cls(low=low, high=high, max_norm=None if norm is None else float(norm) * action_repeat)

    def reach(self) -> float | None:
        """The largest action norm allowed in every direction: `max_norm`, else the nearest low/high limit (None
        where a direction is unbounded)."""
        if self.max_norm is not None:
            return float(self.max_norm)
        if self.low is None or self.high is None:
            return None
        limits = torch.cat((torch.as_tensor(self.low).flatten().abs(), torch.as_tensor(self.high).flatten().abs()))
        return float(limits.min())

    def project(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., A) actions clamped per dimension, then scaled down (direction kept) to norm <= max_norm."""
        if self.low is not None or self.high is not None:
            low = None if self.low is None else torch.as_tensor(self.low, dtype=actions.dtype, device=actions.device)
            high = (
                None if self.high is None else torch.as_tensor(self.high, dtype=actions.dtype, device=actions.device)
            )
            actions = torch.clamp(actions, low, high)
        if self.max_norm is not None:
            norm = actions.norm(dim=-1, keepdim=True)
            actions = actions * (self.max_norm / norm.clamp_min(self.max_norm))
        return actions


def straight_line_plans(horizon: int, directions: int, length: float) -> torch.Tensor:
    """(directions + 1, H, 2) plans: the same 2-D action of norm `length` at every step, in `directions` evenly spaced
    directions, and standing still. Fixed proposals that let a local search consider every heading at full speed."""
    angles = torch.arange(directions, dtype=torch.float32) * (2 * torch.pi / directions)
    steps = length * torch.stack((angles.cos(), angles.sin()), dim=-1)  # (directions, 2)
    steps = torch.cat((steps, steps.new_zeros(1, 2)))
    return steps.unsqueeze(1).expand(-1, horizon, -1).clone()


def shift_plan(plan: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """(H, A) plan without its first `steps` actions, padded at the end by repeating the last one (a warm start)."""
    if steps <= 0:
        return plan
    steps = min(steps, plan.size(0) - 1)
    return torch.cat((plan[steps:], plan[-1:].expand(steps, -1)))


@dataclass
class PlanResult:
    """A planner's answer: `actions` (H, A), its `cost`, and the best cost after each iteration (`history`)."""

    actions: torch.Tensor
    cost: float
    history: list[float]


class _Configurable:
    """`configure(action_dim, bounds)` and the checks every planner shares."""

    horizon: int
    action_dim: int | None
    bounds: ActionBounds
    straight_lines: int = 0
    samples: int = 0

    def configure(self, action_dim: int, bounds: ActionBounds | None = None) -> None:
        """Sets the environment's action width and limits (from `ActionBounds.from_env`)."""
        self.action_dim, self.bounds = action_dim, bounds or ActionBounds()
        self.proposals = _straight_line_proposals(
            self.straight_lines, self.horizon, action_dim, self.samples, self.bounds
        )

    def _start(self, init: torch.Tensor | None) -> torch.Tensor:
        if self.action_dim is None:
            raise RuntimeError(f"{type(self).__name__}.configure(action_dim, bounds) must be called before plan()")
        return torch.zeros(self.horizon, self.action_dim) if init is None else init.detach().clone().float()


class CEMPlanner(_Configurable):
    """Cross-entropy method: sample around a Gaussian, refit it to the elites, repeat.

    Args:
        horizon: planned steps H.
        action_dim: A (None: set by `configure`).
        samples: candidates per iteration S (the current mean is always one of them).
        elites: candidates the Gaussian is refitted to.
        iterations: refits per plan.
        init_std: initial standard deviation per dimension (float or (A,)), in action units.
        min_std: the standard deviation never falls below this (keeps exploring).
        momentum: new mean/std = momentum * old + (1 - momentum) * elite statistics.
        bounds: `ActionBounds` applied to every sample.
        straight_lines: > 0 (2-D bounded actions only): the first iteration also scores `straight_line_plans` in
            this many directions at `bounds.reach()`, and standing still, in place of as many random samples.
            Warm-started from the previous plan, CEM searches near it and misses a turn the previous plan did not
            make (along a wall toward a door); the straight lines put every heading in the first elites.
    """

    def __init__(
        self,
        horizon: int,
        action_dim: int | None = None,
        samples: int = 256,
        elites: int = 32,
        iterations: int = 8,
        init_std: float | tuple[float, ...] = 1.0,
        min_std: float = 0.05,
        momentum: float = 0.0,
        bounds: ActionBounds | None = None,
        straight_lines: int = 0,
    ) -> None:
        if not 0 < elites <= samples:
            raise ValueError(f"CEM needs 0 < elites <= samples, got elites={elites}, samples={samples}")
        self.horizon, self.action_dim = horizon, action_dim
        self.samples, self.elites, self.iterations = samples, elites, iterations
        self.init_std, self.min_std, self.momentum = init_std, min_std, momentum
        self.straight_lines = straight_lines
        self.bounds, self.proposals = bounds or ActionBounds(), None
        if action_dim is not None:
            self.configure(action_dim, self.bounds)

    @torch.no_grad()
    def plan(
        self, cost: Cost, init: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> PlanResult:
        """Minimise `cost` over (H, A) sequences, starting from `init` (H, A) (default zeros)."""
        mean = self._start(init)
        std = torch.as_tensor(self.init_std, dtype=mean.dtype).expand_as(mean).clone()
        best, best_cost, history = self.bounds.project(mean), float("inf"), []
        for iteration in range(self.iterations):
            proposals = self.proposals if iteration == 0 else None
            candidates = _candidates(mean, std, self.samples, proposals, self.bounds, generator)
            costs = cost(candidates.to(_device_of(cost, candidates))).float().cpu()
            order = costs.argsort()
            if float(costs[order[0]]) < best_cost:
                best, best_cost = candidates[order[0]], float(costs[order[0]])
            history.append(best_cost)
            elite = candidates[order[: self.elites]]
            mean = self.momentum * mean + (1 - self.momentum) * elite.mean(0)
            std = (self.momentum * std + (1 - self.momentum) * elite.std(0, unbiased=False)).clamp_min(self.min_std)
        return PlanResult(best, best_cost, history)


class MPPIPlanner(_Configurable):
    """Model-predictive path integral: perturb the mean, average the samples weighted by exp(-cost / temperature).

    Args:
        horizon, action_dim: H and A.
        samples: candidates per iteration S (the current mean is always one of them).
        iterations: updates per plan.
        noise_std: perturbation standard deviation per dimension (float or (A,)).
        temperature: lambda; costs are shifted by their minimum, so it is in the cost's units (smaller = greedier).
        noise_decay: the perturbation shrinks by this factor after every iteration (1 = fixed noise); below 1 the
            later iterations refine instead of re-exploring.
        bounds: `ActionBounds` applied to every sample and to the weighted mean.
        straight_lines: as `CEMPlanner`'s: the first iteration also weighs constant full-speed plans.
    """

    def __init__(
        self,
        horizon: int,
        action_dim: int | None = None,
        samples: int = 256,
        iterations: int = 8,
        noise_std: float | tuple[float, ...] = 1.0,
        temperature: float = 0.01,
        noise_decay: float = 1.0,
        bounds: ActionBounds | None = None,
        straight_lines: int = 0,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"MPPI temperature must be > 0, got {temperature}")
        self.horizon, self.action_dim = horizon, action_dim
        self.samples, self.iterations = samples, iterations
        self.noise_std, self.temperature, self.noise_decay = noise_std, temperature, noise_decay
        self.straight_lines = straight_lines
        self.bounds, self.proposals = bounds or ActionBounds(), None
        if action_dim is not None:
            self.configure(action_dim, self.bounds)

    @torch.no_grad()
    def plan(
        self, cost: Cost, init: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> PlanResult:
        """Minimise `cost` over (H, A) sequences, starting from `init` (H, A) (default zeros)."""
        mean = self._start(init)
        std = torch.as_tensor(self.noise_std, dtype=mean.dtype).expand_as(mean)
        best, best_cost, history = self.bounds.project(mean), float("inf"), []
        for iteration in range(self.iterations):
            proposals = self.proposals if iteration == 0 else None
            candidates = _candidates(mean, std, self.samples, proposals, self.bounds, generator)
            costs = cost(candidates.to(_device_of(cost, candidates))).float().cpu()
            i = int(costs.argmin())
            if float(costs[i]) < best_cost:
                best, best_cost = candidates[i], float(costs[i])
            history.append(best_cost)
            weights = torch.softmax(-(costs - costs[i]) / self.temperature, dim=0)
            mean = self.bounds.project((weights.view(-1, 1, 1) * candidates).sum(0))
            std = std * self.noise_decay
        # the weighted mean is the MPPI answer; keep the best sample when the mean scores worse
        final = float(cost(mean.unsqueeze(0).to(_device_of(cost, mean))).float().cpu()[0])
        if final <= best_cost:
            best, best_cost = mean, final
        return PlanResult(best, best_cost, history)


class GradientPlanner(_Configurable):
    """Gradient descent on the action sequence through the differentiable rollout (as DINO-WM's and
    stable-worldmodel's gradient solvers): `samples` sequences in parallel (the start and Gaussian perturbations of
    it), Adam or plain GD on their summed cost, each step projected back onto the bounds; the best sequence seen wins.

    Args:
        horizon: planned steps H.
        action_dim: A (None: set by `configure`).
        iterations: gradient steps per plan.
        lr: step size (in action units for "sgd" on a unit-scale cost; Adam's steps are about `lr` per element).
        samples: sequences descended in parallel (1 = the start alone).
        init_std: spread of the perturbed starts (per dimension).
        optimizer: "adam" or "sgd".
        bounds: `ActionBounds` (set by `configure` from the environment).
        init_planner: another planner whose answer is the start (e.g. a short CEM: sampling finds the basin,
            gradients refine within it); None starts from the warm start (or zeros).
    """

    def __init__(
        self,
        horizon: int,
        action_dim: int | None = None,
        iterations: int = 30,
        lr: float = 0.3,
        samples: int = 8,
        init_std: float | tuple[float, ...] = 1.0,
        optimizer: str = "adam",
        bounds: ActionBounds | None = None,
        init_planner: _Configurable | None = None,
    ) -> None:
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"GradientPlanner optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if samples < 1 or iterations < 1:
            raise ValueError(f"GradientPlanner needs samples >= 1 and iterations >= 1, got {samples}, {iterations}")
        self.horizon, self.action_dim = horizon, action_dim
        self.iterations, self.lr, self.samples, self.init_std = iterations, lr, samples, init_std
        self.optimizer, self.init_planner = optimizer, init_planner
        self.bounds, self.proposals = bounds or ActionBounds(), None
        if action_dim is not None:
            self.configure(action_dim, self.bounds)

    def configure(self, action_dim: int, bounds: ActionBounds | None = None) -> None:
        super().configure(action_dim, bounds)
        if self.init_planner is not None:
            self.init_planner.configure(action_dim, bounds)

    def plan(
        self, cost: Cost, init: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> PlanResult:
        """Minimise `cost` over (H, A) sequences by descending it from `init` (or the init planner's answer)."""
        start = self._start(init)
        history: list[float] = []
        if self.init_planner is not None:
            seeded = self.init_planner.plan(cost, start, generator)
            start, history = seeded.actions.detach().clone().float(), list(seeded.history)
        std = torch.as_tensor(self.init_std, dtype=start.dtype)
        noise = torch.randn(self.samples - 1, *start.shape, generator=generator, dtype=start.dtype)
        actions = self.bounds.project(torch.cat((start.unsqueeze(0), start + std * noise)))
        device = _device_of(cost, actions)
        actions = actions.to(device).requires_grad_(True)
        optim_cls = torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD
        optimizer = optim_cls([actions], lr=self.lr)
        best, best_cost = start, float("inf")
        for step in range(self.iterations + 1):  # the last pass only scores the final step's actions
            with torch.enable_grad():
                costs = cost(actions)
            scores = costs.detach()
            i = int(scores.argmin())
            if float(scores[i]) < best_cost:
                best, best_cost = actions[i].detach().cpu().clone(), float(scores[i])
            history.append(best_cost)
            if step == self.iterations:
                break
            optimizer.zero_grad()
            costs.sum().backward()
            optimizer.step()
            with torch.no_grad():
                actions.copy_(self.bounds.project(actions))
        return PlanResult(best, best_cost, history)


def _straight_line_proposals(
    straight_lines: int, horizon: int, action_dim: int, samples: int, bounds: ActionBounds
) -> torch.Tensor | None:
    """`straight_line_plans` at `bounds.reach()`, or None for 0; a clear error where they cannot be built."""
    if not straight_lines:
        return None
    length = bounds.reach()
    if action_dim != 2 or length is None:
        raise ValueError(
            f"straight_lines={straight_lines} needs 2-D actions with a norm limit or low/high bounds (got "
            f"action_dim={action_dim}, bounds={bounds}); set straight_lines=0 otherwise"
        )
    if straight_lines + 2 > samples:
        raise ValueError(f"straight_lines={straight_lines} leaves no random samples of samples={samples}")
    return straight_line_plans(horizon, straight_lines, length)


def _candidates(
    mean: torch.Tensor,
    std: torch.Tensor,
    samples: int,
    proposals: torch.Tensor | None,
    bounds: ActionBounds,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(samples, H, A) candidates within `bounds`: the mean, the fixed `proposals` (P, H, A) if any, and Gaussian
    samples around the mean for the rest."""
    fixed = [mean.unsqueeze(0)] + ([] if proposals is None else [proposals.to(mean.dtype)])
    noise = torch.randn(samples - sum(len(f) for f in fixed), *mean.shape, generator=generator, dtype=mean.dtype)
    return bounds.project(torch.cat((*fixed, mean + std * noise)))


def _device_of(cost: Cost, default: torch.Tensor) -> torch.device:
    """Where the cost wants its candidates: `cost.device` when it says so (a world model's), else where they are."""
    return getattr(cost, "device", default.device)

"""CEM, MPPI and the gradient planner on analytic energies: minimisers found to tolerance, bounds and norm limits
respected."""

from __future__ import annotations

import pytest
import torch

from jepa.planning.planners import (
    ActionBounds,
    CEMPlanner,
    GradientPlanner,
    MPPIPlanner,
    shift_plan,
    straight_line_plans,
)


def quadratic(target: torch.Tensor):
    def cost(actions: torch.Tensor) -> torch.Tensor:  # (S, H, A) -> (S,)
        return (actions - target).square().sum(dim=(1, 2))

    return cost


def double_well(actions: torch.Tensor) -> torch.Tensor:
    """Non-convex in x: a local minimum near x = +0.96 and the global one near x = -1.04 (y at 0.5)."""
    x, y = actions[:, 0, 0], actions[:, 0, 1]
    return (x.square() - 1).square() + 0.3 * x + (y - 0.5).square()


PLANNERS = {
    "cem": lambda h, a, bounds=None, std=1.0: CEMPlanner(
        h, a, samples=128, elites=16, iterations=20, init_std=std, bounds=bounds
    ),
    "mppi": lambda h, a, bounds=None, std=1.0: MPPIPlanner(
        h, a, samples=128, iterations=30, noise_std=std, temperature=0.01, noise_decay=0.85, bounds=bounds
    ),
    # a few parallel starts descend the cost; Adam's ~lr-sized steps walk the 3-unit distances in 100 iterations
    "gradient": lambda h, a, bounds=None, std=1.0: GradientPlanner(
        h, a, iterations=100, lr=0.1, samples=16, init_std=std, bounds=bounds
    ),
}


@pytest.mark.parametrize("name", PLANNERS)
def test_quadratic_minimiser_within_bounds(name):
    target = torch.tensor([[0.5, -0.3, 2.0], [-1.5, 0.2, 0.0], [0.1, 0.9, -3.0], [0.0, 0.0, 0.7]])
    bounds = ActionBounds(low=(-1.0, -1.0, -1.0), high=(1.0, 1.0, 1.0))
    planner = PLANNERS[name](4, 3, bounds)
    result = planner.plan(quadratic(target), generator=torch.Generator().manual_seed(0))
    expected = target.clamp(-1, 1)  # the constrained minimiser of a separable quadratic
    assert result.actions.shape == (4, 3)
    assert (result.actions - expected).abs().max() < 0.08
    assert result.actions.abs().max() <= 1.0 + 1e-6
    assert result.history == sorted(result.history, reverse=True)  # the best cost never gets worse


@pytest.mark.parametrize("name", PLANNERS)
def test_non_convex_finds_the_global_minimum(name):
    # start in the basin of the local minimum (a greedy descent would stay there), with a wide search distribution
    planner = PLANNERS[name](1, 2, std=2.0)
    init = torch.tensor([[0.96, 0.0]])
    result = planner.plan(double_well, init=init, generator=torch.Generator().manual_seed(0))
    x, y = result.actions[0].tolist()
    assert abs(x + 1.0356) < 0.03 and abs(y - 0.5) < 0.03


@pytest.mark.parametrize("name", PLANNERS)
def test_plans_respect_max_norm(name):
    bounds = ActionBounds(max_norm=2.0)
    planner = PLANNERS[name](3, 2, bounds)
    target = torch.tensor([[5.0, 5.0], [0.0, -9.0], [1.0, 0.0]])
    seen = []

    def cost(actions):
        seen.append(actions.norm(dim=-1).max().item())
        return quadratic(target)(actions)

    result = planner.plan(cost, generator=torch.Generator().manual_seed(0))
    assert max(seen) <= 2.0 + 1e-5  # every candidate the cost saw was within the limit
    assert result.actions.norm(dim=-1).max() <= 2.0 + 1e-5
    # the constrained optimum points at the target with norm 2 (the last step is inside)
    direction = torch.nn.functional.normalize(target[:2], dim=-1)
    assert torch.allclose(result.actions[:2], 2.0 * direction, atol=0.1)
    assert torch.allclose(result.actions[2], target[2], atol=0.1)


def test_project_clamps_then_limits_norm():
    bounds = ActionBounds(low=-1.0, high=3.0, max_norm=2.0)
    out = bounds.project(torch.tensor([[3.0, -4.0], [0.5, 0.5]]))
    assert torch.allclose(out[0], torch.tensor([3.0, -1.0]) * (2.0 / 10**0.5))
    assert torch.allclose(out[1], torch.tensor([0.5, 0.5]))


def test_shift_plan_drops_executed_steps_and_repeats_the_last():
    plan = torch.arange(8.0).view(4, 2)
    assert torch.equal(shift_plan(plan, 1), torch.tensor([[2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [6.0, 7.0]]))
    assert torch.equal(shift_plan(plan, 0), plan)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="elites"):
        CEMPlanner(2, 2, samples=8, elites=16)
    with pytest.raises(ValueError, match="temperature"):
        MPPIPlanner(2, 2, temperature=0.0)
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'sgd'"):
        GradientPlanner(2, 2, optimizer="lbfgs")


LOCAL_SEARCH = {
    "cem": lambda bounds, lines: CEMPlanner(
        2, 2, samples=32, elites=4, iterations=3, init_std=0.3, bounds=bounds, straight_lines=lines
    ),
    "mppi": lambda bounds, lines: MPPIPlanner(
        2, 2, samples=32, iterations=3, noise_std=0.3, temperature=0.01, bounds=bounds, straight_lines=lines
    ),
}


@pytest.mark.parametrize("make", LOCAL_SEARCH.values(), ids=LOCAL_SEARCH.keys())
def test_straight_lines_let_a_warm_started_search_turn(make):
    # a shallow basin around the previous plan (standing still) and a deep, narrow one at full speed "up": a local
    # search from the warm start never samples it; the straight-line proposals put that heading in the first elites
    well = torch.tensor([0.0, 4.0])

    def cost(actions: torch.Tensor) -> torch.Tensor:
        near_start = 1 - 0.5 * torch.exp(-actions.square().sum(-1))
        into_well = 1 - torch.exp(-(actions - well).square().sum(-1) / 0.5)
        return torch.minimum(near_start, into_well).sum(1)

    bounds = ActionBounds(max_norm=4.0)
    init = torch.zeros(2, 2)
    local, turning = (make(bounds, lines) for lines in (0, 8))
    stuck = local.plan(cost, init, torch.Generator().manual_seed(0))
    turned = turning.plan(cost, init, torch.Generator().manual_seed(0))
    assert stuck.actions.norm(dim=-1).max() < 1.5 and stuck.cost > 0.9
    assert (turned.actions - well).norm(dim=-1).max() < 0.3 and turned.cost < 0.1
    assert turned.actions.norm(dim=-1).max() <= 4.0 + 1e-5


def test_straight_lines_need_bounded_2d_actions():
    with pytest.raises(ValueError, match="norm limit or low/high bounds"):
        CEMPlanner(2, 2, straight_lines=8, bounds=ActionBounds(low=-1.0))
    with pytest.raises(ValueError, match="action_dim=3"):
        MPPIPlanner(2, 3, straight_lines=8, bounds=ActionBounds(max_norm=1.0))
    boxed = CEMPlanner(2, 2, straight_lines=8, bounds=ActionBounds(low=(-10.0, -4.0), high=(10.0, 10.0)))
    assert torch.allclose(boxed.proposals[:8].norm(dim=-1), torch.full((8, 2), 4.0))  # inside the box every way
    plans = straight_line_plans(3, 4, 2.0)
    assert plans.shape == (5, 3, 2) and torch.allclose(plans[:4].norm(dim=-1), torch.full((4, 3), 2.0))
    assert plans[4].abs().max() == 0


def test_gradient_planner_follows_the_gradient_of_the_rollout():
    """On a cost whose only information is its gradient (a smooth bowl), one SGD step moves every action by exactly
    -lr * d(cost)/d(action); projection then keeps the step inside the bounds."""
    target = torch.tensor([[0.3, -0.2], [0.1, 0.4]])
    planner = GradientPlanner(2, 2, iterations=1, lr=0.25, samples=1, optimizer="sgd")
    result = planner.plan(quadratic(target))
    torch.testing.assert_close(result.actions, 0.25 * 2 * target)  # from 0: a - lr * 2 (a - target)
    bounded = GradientPlanner(2, 2, iterations=50, lr=0.1, samples=1, bounds=ActionBounds(max_norm=0.1))
    far = bounded.plan(quadratic(torch.full((2, 2), 5.0))).actions
    assert far.norm(dim=-1).max() <= 0.1 + 1e-6
    torch.testing.assert_close(far, torch.full((2, 2), 0.1 / 2**0.5), atol=1e-4, rtol=0)


def test_gradient_planner_refines_a_sampling_planners_answer():
    """Started from a short CEM (which finds the global basin of the double well), gradient steps polish it to the
    global minimum; started alone in the local basin, plain descent stays there."""
    init = torch.tensor([[0.96, 0.0]])
    alone = GradientPlanner(1, 2, iterations=60, lr=0.05, samples=1).plan(double_well, init=init)
    assert abs(alone.actions[0, 0] - 0.96) < 0.1  # the local minimum: gradients alone cannot cross the ridge
    cem = CEMPlanner(1, samples=64, elites=8, iterations=3, init_std=2.0)
    seeded = GradientPlanner(1, 2, iterations=60, lr=0.05, samples=1, init_planner=cem)
    result = seeded.plan(double_well, init=init, generator=torch.Generator().manual_seed(0))
    x, y = result.actions[0].tolist()
    assert abs(x + 1.0356) < 0.01 and abs(y - 0.5) < 0.01
    assert len(result.history) == 3 + 61  # CEM's iterations, then the descent's

"""Energies of planned latent trajectories: how far the predicted latents are from the goal's.

Two functions for tensors (`goal_energy`, `embedding_energy`) and two configurable energies built on them, the
`energy` config group: `GoalEnergy` (a distance in the world model's own latent space; for jointly trained world
models, whose latent distance is shaped for planning) and `HeadEnergy` (a `LatentEnergyHead`'s embedding distance,
for frozen V-JEPA latents whose raw distance is flat beyond a patch).
"""

from __future__ import annotations

import torch
from torch import nn

REDUCTIONS = ("final", "sum", "mean")


def _reduce(per_step: torch.Tensor, reduce: str) -> torch.Tensor:
    if reduce not in REDUCTIONS:
        raise ValueError(f"energy reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if reduce == "final":
        return per_step[:, -1]
    return per_step.sum(dim=1) if reduce == "sum" else per_step.mean(dim=1)


def goal_energy(predicted: torch.Tensor, goal: torch.Tensor, p: int = 1, reduce: str = "final") -> torch.Tensor:
    """Distance of each candidate's predicted latents to the goal latent.

    Args:
        predicted: (S, L, *Z) latents of L planned steps for S candidate action sequences (Z: (D,) vectors or
            (N, D) tokens).
        goal: (*Z) goal latent (or (S, *Z), one per candidate).
        p: 1 = mean absolute difference (the AC training loss), 2 = mean squared difference (eb_jepa's planning
            cost).
        reduce: "final" scores the last predicted step only, "sum" sums the per-step distances over the horizon
            (rewards getting there early, and is more robust to a rollout's late errors: eb_jepa measured 97% against
            89% for "final"), "mean" averages them.

    Returns:
        (S,) energies, lower is better.
    """
    if p not in (1, 2):
        raise ValueError(f"energy p must be 1 or 2, got {p}")
    latent_dims = predicted.dim() - 2
    diff = predicted - (goal.unsqueeze(1) if goal.dim() == latent_dims + 1 else goal)
    per_step = (diff.abs() if p == 1 else diff.square()).flatten(2).mean(dim=-1)  # (S, L)
    return _reduce(per_step, reduce)


def embedding_energy(predicted: torch.Tensor, goal: torch.Tensor, reduce: str = "final") -> torch.Tensor:
    """Euclidean distance of predicted planning embeddings (a `LatentEnergyHead`'s outputs) to the goal's.

    Args:
        predicted: (S, L, K) embeddings of L planned steps for S candidates.
        goal: (K,) goal embedding (or (S, K)).
        reduce: "final", "sum" or "mean", as `goal_energy`.

    Returns:
        (S,) energies, lower is better.
    """
    per_step = (predicted - (goal.unsqueeze(1) if goal.dim() == 2 else goal)).norm(dim=-1)  # (S, L)
    return _reduce(per_step, reduce)


class GoalEnergy:
    """`goal_energy` with fixed settings: `energy(predicted (S, L, *Z), goal (*Z)) -> (S,)`.

    Args:
        p: 1 (mean absolute) or 2 (mean squared difference).
        reduce: "final", "sum" or "mean" over the horizon.
    """

    def __init__(self, p: int = 2, reduce: str = "sum") -> None:
        if p not in (1, 2):
            raise ValueError(f"energy p must be 1 or 2, got {p}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"energy reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.p, self.reduce = p, reduce

    def __call__(self, predicted: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return goal_energy(predicted, goal, self.p, self.reduce)

    def __repr__(self) -> str:
        return f"GoalEnergy(p={self.p}, reduce={self.reduce!r})"


class HeadEnergy:
    """The distance of a `LatentEnergyHead`'s embeddings of the predicted latents to the goal's, plus `latent_weight`
    times the raw `goal_energy` (the head's slow features guide from afar; the raw latents, sharp within about a
    patch, place the agent on the goal). The V-JEPA 2-AC route's energy (BENCHMARKS.md).

    Args:
        head: the trained head (`jepa.checkpoints.load_energy_head`).
        latent_weight: weight of the raw latent term (Two Rooms: 300).
        p, reduce: of both terms, as `GoalEnergy`.
    """

    def __init__(self, head: nn.Module, latent_weight: float = 0.0, p: int = 1, reduce: str = "sum") -> None:
        self.head, self.latent_weight, self.raw = head.eval(), latent_weight, GoalEnergy(p, reduce)

    def __call__(self, predicted: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        head = self.head.to(predicted.device)
        energy = embedding_energy(head(predicted), head(goal), self.raw.reduce)
        if self.latent_weight:
            energy = energy + self.latent_weight * self.raw(predicted, goal)
        return energy

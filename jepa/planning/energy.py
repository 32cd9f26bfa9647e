"""Energies of planned latent trajectories: the distance of predicted latents to the goal's latent."""

from __future__ import annotations

import torch


def goal_energy(predicted: torch.Tensor, goal: torch.Tensor, p: int = 1, reduce: str = "final") -> torch.Tensor:
    """Distance of each candidate's predicted latents to the goal latent.

    Args:
        predicted: (S, L, N, D) latents of L planned steps for S candidate action sequences.
        goal: (N, D) goal latent (or (S, N, D), one per candidate).
        p: 1 = mean absolute difference (the AC training loss), 2 = mean squared difference.
        reduce: "final" scores the last predicted step only, "sum" sums the per-step distances over the horizon
            (rewards getting there early).

    Returns:
        (S,) energies, lower is better.
    """
    if p not in (1, 2):
        raise ValueError(f"energy p must be 1 or 2, got {p}")
    if reduce not in ("final", "sum"):
        raise ValueError(f"energy reduce must be 'final' or 'sum', got {reduce!r}")
    diff = predicted - (goal.unsqueeze(1) if goal.dim() == 3 else goal)
    per_step = (diff.abs() if p == 1 else diff.square()).mean(dim=(2, 3))  # (S, L)
    return per_step[:, -1] if reduce == "final" else per_step.sum(dim=1)


def embedding_energy(predicted: torch.Tensor, goal: torch.Tensor, reduce: str = "final") -> torch.Tensor:
    """Euclidean distance of predicted planning embeddings (a `LatentEnergyHead`'s outputs) to the goal's.

    Args:
        predicted: (S, L, K) embeddings of L planned steps for S candidates.
        goal: (K,) goal embedding (or (S, K)).
        reduce: "final" or "sum", as `goal_energy` (eb_jepa sums the distances over the horizon).

    Returns:
        (S,) energies, lower is better.
    """
    if reduce not in ("final", "sum"):
        raise ValueError(f"energy reduce must be 'final' or 'sum', got {reduce!r}")
    per_step = (predicted - (goal.unsqueeze(1) if goal.dim() == 2 else goal)).norm(dim=-1)  # (S, L)
    return per_step[:, -1] if reduce == "final" else per_step.sum(dim=1)

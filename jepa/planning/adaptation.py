"""Test-time adaptation of a world model's predictor to the episode it plans in (online model adaptation, as in
model-based RL: Nagabandi et al. 2019, "Learning to Adapt").

A learned predictor can be wrong in ways the planner then exploits: on Two Rooms a push into the wall is predicted
to move the agent half a step (docs/findings.md), so plans walk through the wall and the agent stays pressed
against it. The agent sees what really happened after every executed chunk of actions; fitting the predictor to
those transitions, a few optimiser steps per re-plan, makes the model agree with the episode where it was wrong.
The predictor is restored to its trained weights at the start of every episode, so episodes stay independent and
seeded runs reproducible.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class PredictorAdaptation:
    """Fits `world_model.predictor` to the (latent, executed actions, next latent) transitions of one episode.

    Args:
        world_model: has `predictor` (an `nn.Module`) and `rollout(latents (B, 1, *Z), actions (B, L, A)) ->
            (B, L, *Z)`, as `JEPAWorldModel`.
        steps: optimiser steps after each recorded transition.
        lr: Adam's learning rate.
        max_transitions: the most recent transitions kept (all of a 200-step episode by default).
    """

    def __init__(self, world_model: nn.Module, steps: int, lr: float = 1e-3, max_transitions: int = 256) -> None:
        predictor = getattr(world_model, "predictor", None)
        if not isinstance(predictor, nn.Module) or not hasattr(world_model, "rollout"):
            raise ValueError(
                f"{type(world_model).__name__} has no `predictor` module and `rollout` to adapt: set "
                "agent.adapt_steps=0, or give the world model both (JEPAWorldModel has them)"
            )
        if steps < 1 or lr <= 0 or max_transitions < 1:
            raise ValueError(
                f"adaptation needs steps >= 1, lr > 0 and max_transitions >= 1; got {steps}, {lr}, {max_transitions}"
            )
        self.world_model, self.predictor = world_model, predictor
        self.steps, self.lr, self.max_transitions = steps, lr, max_transitions
        self.trained_state = copy.deepcopy(predictor.state_dict())
        self.transitions: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.optimizer = torch.optim.Adam(predictor.parameters(), lr=lr)

    def reset(self) -> None:
        """Back to the trained weights, no transitions, a fresh optimiser (call at the start of each episode)."""
        self.predictor.load_state_dict(self.trained_state)
        self.transitions.clear()
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=self.lr)

    def record(self, latent: torch.Tensor, actions: torch.Tensor, next_latent: torch.Tensor) -> None:
        """One executed chunk: latent (1, 1, *Z) before it, its actions (1, L, A) in the model's units, and the
        latent (1, 1, *Z) observed after it."""
        self.transitions.append((latent.detach(), actions.detach(), next_latent.detach()))
        del self.transitions[: -self.max_transitions]

    def loss(self) -> torch.Tensor:
        """Mean squared error of the predicted latent at the end of each recorded chunk against the observed one."""
        errors = []
        for length in sorted({actions.size(1) for _, actions, _ in self.transitions}):
            group = [t for t in self.transitions if t[1].size(1) == length]
            latents, actions, targets = (torch.cat(parts) for parts in zip(*group, strict=True))
            predicted = self.world_model.rollout(latents, actions)[:, -1:]
            errors.append((predicted - targets).pow(2).flatten(1).mean(1))
        return torch.cat(errors).mean()

    def update(self) -> float:
        """`steps` Adam steps on the recorded transitions; returns the last loss (before its step)."""
        if not self.transitions:
            return 0.0
        was_training = self.predictor.training
        flags = [p.requires_grad for p in self.predictor.parameters()]
        self.predictor.requires_grad_(True)
        value = 0.0
        with torch.enable_grad():
            for _ in range(self.steps):
                loss = self.loss()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                value = float(loss)
        for parameter, flag in zip(self.predictor.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)
        self.predictor.train(was_training)
        return value

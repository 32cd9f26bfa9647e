"""Action-conditioned predictors of a world model's next latent, trained jointly with its encoder.

Every predictor here answers two questions of the same shape, whatever its latent (a vector (D,) or tokens (N, D)):
- `teacher_forced(z, actions)`: (B, T, *S) latents and (B, T, A) actions -> (B, T, *S) predictions of the latents
  that follow each one (training);
- `rollout(z, actions)`: (B, T0, *S) context latents and (B, T0 - 1 + L, A) actions -> (B, L, *S) predictions, each
  fed back in (training on its own errors, and planning).

`GRUPredictor` and `ResidualMLPPredictor` are Markov in the latent (the next latent depends on the current one and
the action only): a rollout is a loop of one small step. `ACViTPredictor` is V-JEPA 2-AC's block-causal ViT over
frames of tokens: every step attends to all earlier frames.

No proprioceptive state goes in: a jointly trained latent carries the agent's state itself, and the predictor learns
what a wall does to a move, so a rollout never sees a state advanced through a wall.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from jepa.models.ac_predictor import ACWorldModel, VisionTransformerPredictorAC


def _check_rollout(z: torch.Tensor, actions: torch.Tensor) -> int:
    steps = actions.size(1) - z.size(1) + 1
    if steps < 1:
        raise ValueError(
            f"rollout needs at least T0 = {z.size(1)} actions (one per context latent), got {actions.size(1)}"
        )
    return steps


class MarkovPredictor(nn.Module, ABC):
    """Base of predictors whose next latent depends on the current latent and action only: subclasses define
    `step(z, a)`; teacher forcing and rollouts follow from it."""

    @abstractmethod
    def step(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B, *S) latents, (B, A) actions -> (B, *S) next latents."""

    def teacher_forced(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, T, *S), (B, T, A) -> (B, T, *S): every step at once, batched over time."""
        B, T = z.shape[:2]
        return self.step(z.flatten(0, 1), actions.flatten(0, 1)).unflatten(0, (B, T))

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, T0, *S), (B, T0 - 1 + L, A) -> (B, L, *S), starting from the last context latent."""
        steps = _check_rollout(z, actions)
        T0 = z.size(1)
        latent, predictions = z[:, -1], []
        for t in range(steps):
            latent = self.step(latent, actions[:, T0 - 1 + t])
            predictions.append(latent)
        return torch.stack(predictions, dim=1)


class GRUPredictor(MarkovPredictor):
    """A GRU cell whose hidden state is the latent: z' = norm(GRU(a / action_scale, z)) (eb_jepa's `RNNPredictor`).

    Args:
        latent_dim: D.
        action_dim: A.
        action_scale: actions enter as a / action_scale (raw units in, order-1 values to the cell).
        final_norm: LayerNorm on the output, as the encoder's (predictions live where the latents do).
        update_bias: initial bias of the update gate: z' = (1 - u) n + u z with u = sigmoid(bias + ...), so a
            positive bias starts the cell near "keep the latent" (2: u ~ 0.88), as the residual predictors start at
            "repeat the latent". 0 is PyTorch's default.
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int = 2,
        action_scale: float = 1.0,
        final_norm: bool = True,
        update_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.latent_dim, self.action_dim, self.action_scale = latent_dim, action_dim, action_scale
        self.cell = nn.GRUCell(action_dim, latent_dim)
        with torch.no_grad():  # PyTorch orders the gates (reset, update, new)
            self.cell.bias_hh[latent_dim : 2 * latent_dim] += update_bias
        self.norm = nn.LayerNorm(latent_dim) if final_norm else nn.Identity()

    def step(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.norm(self.cell(action / self.action_scale, z))


class ResidualMLPPredictor(MarkovPredictor):
    """z' = norm(z + MLP([z, a / action_scale])): a residual MLP on the latent and the action.

    Args:
        latent_dim: D.
        action_dim: A.
        hidden_dim: width of the hidden layers.
        depth: hidden layers.
        action_scale: actions enter as a / action_scale.
        final_norm: LayerNorm on the output.
        zero_init: start the output layer at zero, i.e. from "repeat the latent": the predictor then only has to
            learn what an action changes, and predicts no worse than standing still from the first step.
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int = 2,
        hidden_dim: int = 512,
        depth: int = 2,
        action_scale: float = 1.0,
        final_norm: bool = True,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.latent_dim, self.action_dim, self.action_scale = latent_dim, action_dim, action_scale
        layers: list[nn.Module] = []
        width = latent_dim + action_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_dim), nn.GELU()]
            width = hidden_dim
        layers.append(nn.Linear(width, latent_dim))
        if zero_init:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        self.mlp = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(latent_dim) if final_norm else nn.Identity()

    def step(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.norm(z + self.mlp(torch.cat([z, action / self.action_scale], dim=-1)))


class ACViTPredictor(nn.Module):
    """V-JEPA 2-AC's block-causal ViT (`VisionTransformerPredictorAC`) as the predictor of token latents (N, D), or of
    vector latents (D,) as frames of one token (`img_size = patch_size = tubelet_size = 1`).

    Frames of N tokens with one action token each (no state: zeros of width 1), attention causal across frames;
    `residual` predicts each frame's change (z' = LN(z + out)), else the latent itself (z' = LN(out)), as
    `ACWorldModel`.

    Args:
        residual: predict latent changes.
        **predictor_kwargs: `VisionTransformerPredictorAC` arguments (`img_size`, `patch_size`, `embed_dim` = D,
            `predictor_embed_dim`, `depth`, `num_heads`, `action_dim`, ...); `state_dim` is fixed to 1.
    """

    def __init__(self, residual: bool = True, **predictor_kwargs: Any) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {"residual": residual, **predictor_kwargs}
        self.residual = residual
        self.predictor = VisionTransformerPredictorAC(**{**predictor_kwargs, "state_dim": 1})
        self.action_dim = self.predictor.action_dim

    @property
    def _world_model(self) -> ACWorldModel:
        # built on access: registering it would list the predictor's weights twice
        return ACWorldModel(nn.Identity(), self.predictor, integrate_states=False, residual=self.residual)

    def _states(self, z: torch.Tensor) -> torch.Tensor:
        return z.new_zeros(z.size(0), z.size(1), 1)

    def teacher_forced(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        tokens = z.unsqueeze(2) if z.dim() == 3 else z  # a vector latent is a frame of one token
        out = self._world_model.step(tokens, actions, self._states(z))
        return out.squeeze(2) if z.dim() == 3 else out

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        _check_rollout(z, actions)
        tokens = z.unsqueeze(2) if z.dim() == 3 else z
        out = self._world_model.rollout(tokens, actions, self._states(z))
        return out.squeeze(2) if z.dim() == 3 else out


def normalized(z: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last dim without affine parameters (token latents, as `ACWorldModel`'s)."""
    return F.layer_norm(z, (z.size(-1),))

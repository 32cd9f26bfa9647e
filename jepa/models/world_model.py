"""A JEPA world model trained end to end: pixels -> latent, latent + action -> next latent (PLDM, eb_jepa, LeWM).

`JEPAWorldModel` is the planning seam every planner takes (`encode`, `rollout`, see `jepa.planning.mpc`): it owns its
pixel preprocessing, so an observation goes in as the environment renders it. `InverseDynamics` is the
training-only head that reads the action back from two consecutive latents (one of the regularisers that keep the
latent from ignoring what the agent does).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from jepa.models.preprocess import ImagePreprocessor
from jepa.models.spec import build_module, module_spec


class JEPAWorldModel(nn.Module):
    """Encoder + action-conditioned predictor, trained jointly (`jepa.tasks.world_model.JointWorldModelTask`).

    Args:
        encoder: (N, C, H, W) frames -> (N, *S) latents (`ConvEncoder`: S = (D,); a ViT: (N_tokens, D)); with
            `context_frames` = k > 1 it takes the k frames stacked on the channels, (N, k * C, H, W).
        predictor: `jepa.models.latent_predictors` (`teacher_forced`, `rollout`).
        preprocess: environment images -> the encoder's frames.
        context_frames: frames behind each latent: the frame and the k - 1 before it, so that the latent can hold
            what one frame does not show (PointMaze's velocity). A sequence of T frames then has T - k + 1 latents,
            the first from its frames 0..k-1.
    """

    def __init__(
        self, encoder: nn.Module, predictor: nn.Module, preprocess: ImagePreprocessor, context_frames: int = 1
    ) -> None:
        super().__init__()
        if context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {context_frames}")
        self.encoder, self.predictor, self.preprocess = encoder, predictor, preprocess
        self.context_frames = context_frames

    @property
    def action_dim(self) -> int:
        return self.predictor.action_dim

    def encode(self, observations: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) uint8 images as the environment renders them -> (B, T - context_frames + 1, *S) latents
        (differentiable; a planner calls it under `torch.no_grad`)."""
        return self.encode_with(self.encoder, observations)

    def encode_with(self, encoder: nn.Module, observations: torch.Tensor) -> torch.Tensor:
        """`encode` through `encoder` (this model's, or a copy of it such as an EMA target)."""
        if observations.dim() != 5:
            raise ValueError(f"encode takes (B, T, H, W, C) uint8 observations, got shape {tuple(observations.shape)}")
        B, T = observations.shape[:2]
        k = self.context_frames
        if T < k:
            raise ValueError(
                f"this world model encodes each latent from {k} consecutive frames (context_frames={k}), got "
                f"sequences of {T}: pass at least {k} frames"
            )
        size = getattr(self.encoder, "img_size", None)
        if self.preprocess.size is None and size is not None and tuple(observations.shape[2:4]) != (size, size):
            raise ValueError(
                f"observations of {observations.shape[3]}x{observations.shape[2]} px, but this world model's encoder "
                f"takes {size}x{size} images as they come (its preprocess.size is None): pass images of that size"
            )
        device = next(encoder.parameters()).device
        frames = self.preprocess(observations.to(device)).unflatten(0, (B, T))  # (B, T, C, H, W)
        if k > 1:  # latent t sees frames t..t+k-1 of the sequence, stacked on the channels
            frames = torch.cat([frames[:, j : T - k + 1 + j] for j in range(k)], dim=2)
        return encoder(frames.flatten(0, 1)).unflatten(0, (B, T - k + 1))

    def teacher_forced(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, T, *S), (B, T, A) -> (B, T, *S): the prediction of the latent after each one."""
        return self.predictor.teacher_forced(latents, actions)

    def rollout(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T0, *S) context latents, (B, T0 - 1 + L, A) actions -> (B, L, *S) predicted latents, each fed back.

        `states` is accepted for the planning seam and ignored: this model's latent carries the agent's state.
        """
        return self.predictor.rollout(latents, actions)

    def spec(self) -> dict[str, Any]:
        """How to rebuild this model: the class path and constructor arguments of each part (saved in checkpoints,
        read by `jepa.checkpoints.load_world_model`)."""
        spec: dict[str, Any] = {"encoder": module_spec(self.encoder), "predictor": module_spec(self.predictor)}
        spec["preprocess"] = {
            "size": self.preprocess.size,
            "mean": list(self.preprocess.mean),
            "std": list(self.preprocess.std),
            "even": self.preprocess.even,
        }
        if self.context_frames > 1:
            spec["context_frames"] = self.context_frames
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> JEPAWorldModel:
        """A model of the architecture `spec()` describes, with fresh weights."""
        return cls(
            build_module(spec["encoder"]),
            build_module(spec["predictor"]),
            ImagePreprocessor(**spec["preprocess"]),
            spec.get("context_frames", 1),
        )


class InverseDynamics(nn.Module):
    """MLP from two consecutive latents to the action between them: (B, 2D) -> (B, A) (eb_jepa's IDM).

    Args:
        latent_dim: D of each latent (token latents are averaged over tokens first by the task).
        action_dim: A.
        hidden_dim: width of the two hidden layers.
    """

    def __init__(self, latent_dim: int, action_dim: int = 2, hidden_dim: int = 256) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.mlp = nn.Sequential(
            nn.Linear(2 * latent_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, action_dim),
        )

    def forward(self, z_t: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        """(..., D), (..., D) -> (..., A)."""
        return self.mlp(torch.cat([z_t, z_next], dim=-1))

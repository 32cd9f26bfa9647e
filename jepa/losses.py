"""Loss functions (pure, shape-documented)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_norm_targets(h: torch.Tensor) -> torch.Tensor:
    """Target features normalised per token without affine parameters, as V-JEPA 2 (`F.layer_norm`, eps 1e-5)."""
    return F.layer_norm(h, (h.size(-1),))


def jepa_l1_loss(z_pred: torch.Tensor, z_tgt: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between predicted (B, K, D) and target (B, K, D) features (vjepa2 `loss_exp=1`)."""
    return (z_pred - z_tgt).abs().mean()

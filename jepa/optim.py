"""Optimizer parameter groups, step-driven schedules and the EMA update.

Every schedule is a pure function of the optimizer step and a configured step budget, never of epoch length:
streaming loaders have no epochs (and Lightning reports `estimated_stepping_batches = -1` for them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices only; none on biases, norms (1-D tensors) and the names a
    module lists in `no_weight_decay()` (e.g. mask tokens). The `apply_wd` flag tells the WD schedule which
    group to drive."""
    decay, no_decay = [], []
    for module in modules:
        skip = module.no_weight_decay() if hasattr(module, "no_weight_decay") else set()
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if param.ndim <= 1 or name.endswith(".bias") or name in skip:
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "apply_wd": True},
        {"params": no_decay, "weight_decay": 0.0, "apply_wd": False},
    ]


@dataclass(frozen=True)
class WarmupConstantCooldown:
    """Linear warmup `start -> peak`, constant `peak`, then linear cooldown `peak -> final` (V-JEPA 2's LR).

    Phases are fractions of `total_steps`, so a short fine-tune keeps the same shape as a full run.
    """

    peak: float
    total_steps: int
    start: float = 0.0
    final: float = 0.0
    warmup_fraction: float = 0.0
    cooldown_fraction: float = 0.0

    def __call__(self, step: int) -> float:
        warmup = int(self.warmup_fraction * self.total_steps)
        cooldown = int(self.cooldown_fraction * self.total_steps)
        if step < warmup:
            return self.start + (self.peak - self.start) * step / warmup
        cooldown_start = self.total_steps - cooldown
        if cooldown and step >= cooldown_start:
            progress = min((step - cooldown_start) / cooldown, 1.0)
            return self.peak + (self.final - self.peak) * progress
        return self.peak


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup `0 -> peak` over `warmup_fraction` of `total_steps`, then cosine `peak -> final` (eb_jepa's
    `CosineWithWarmup`, the jointly trained world model's LR)."""

    peak: float
    total_steps: int
    warmup_fraction: float = 0.1
    final: float = 0.0

    def __call__(self, step: int) -> float:
        warmup = int(self.warmup_fraction * self.total_steps)
        if step < warmup:
            return self.peak * (step + 1) / warmup
        progress = min((step - warmup) / max(self.total_steps - warmup, 1), 1.0)
        return self.final + (self.peak - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class PiecewiseLinear:
    """Linear between (fraction of `total_steps`, value) points, constant beyond the first and last: e.g. a loss
    weight held for the first quarter of a run, then faded out by its half: `points=[[0, 16], [0.25, 16], [0.5, 0]]`.
    """

    points: Sequence[Sequence[float]]
    total_steps: int

    def __post_init__(self) -> None:
        fractions = [float(p[0]) for p in self.points]
        if not self.points or fractions != sorted(fractions):
            raise ValueError(f"PiecewiseLinear needs points sorted by fraction, got {list(self.points)}")

    def __call__(self, step: int) -> float:
        progress = step / max(self.total_steps, 1)
        fractions = [float(p[0]) for p in self.points]
        values = [float(p[1]) for p in self.points]
        return float(np.interp(progress, fractions, values))


@dataclass(frozen=True)
class CosineSchedule:
    """Cosine from `start` to `end` over `total_steps` (constant when equal: V-JEPA 2's WD of 0.04)."""

    start: float
    end: float
    total_steps: int

    def __call__(self, step: int) -> float:
        progress = min(step / max(self.total_steps, 1), 1.0)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LinearSchedule:
    """Linear from `start` to `end` over `total_steps` (V-JEPA 2's EMA momentum: constant 0.99925)."""

    start: float
    end: float
    total_steps: int

    def __call__(self, step: int) -> float:
        progress = min(step / max(self.total_steps, 1), 1.0)
        return self.start + (self.end - self.start) * progress


@dataclass(frozen=True)
class StepSchedule:
    """Piecewise constant: `values[i]` from `milestones[i] * total_steps` on (milestones are increasing fractions,
    the first 0). E.g. a rollout-length curriculum: values [2, 8], milestones [0.0, 0.5]."""

    values: Sequence[float]
    milestones: Sequence[float]
    total_steps: int

    def __post_init__(self) -> None:
        if len(self.values) != len(self.milestones) or not self.values:
            raise ValueError(f"StepSchedule needs one value per milestone, got {self.values} and {self.milestones}")
        if self.milestones[0] != 0 or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"StepSchedule milestones must increase from 0, got {list(self.milestones)}")

    def __call__(self, step: int) -> float:
        progress = step / max(self.total_steps, 1)
        pairs = zip(reversed(self.values), reversed(self.milestones), strict=True)
        return next(value for value, milestone in pairs if progress >= milestone)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, in one fused `_foreach` kernel per dtype/device."""
    tgt = [p for p in target.parameters()]
    src = [p.detach() for p in online.parameters()]
    torch._foreach_lerp_(tgt, src, 1.0 - momentum)

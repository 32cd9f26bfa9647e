from __future__ import annotations

import pytest
import torch

from jepa.models.predictor import VisionTransformerPredictor
from jepa.optim import (
    CosineSchedule,
    LinearSchedule,
    StepSchedule,
    WarmupConstantCooldown,
    ema_update,
    param_groups,
)


def test_warmup_constant_cooldown():
    s = WarmupConstantCooldown(
        peak=1.0, start=0.1, final=0.0, warmup_fraction=0.1, cooldown_fraction=0.2, total_steps=100
    )
    assert s(0) == pytest.approx(0.1) and s(5) == pytest.approx(0.55) and s(10) == 1.0 and s(79) == 1.0
    assert s(90) == pytest.approx(0.5) and s(100) == 0.0 and s(1000) == 0.0


def test_constant_and_linear_schedules():
    assert CosineSchedule(0.04, 0.04, 10)(7) == pytest.approx(0.04)
    assert CosineSchedule(1.0, 0.0, 10)(5) == pytest.approx(0.5)
    assert LinearSchedule(0.99, 1.0, 10)(5) == pytest.approx(0.995)


def test_step_schedule_holds_each_value_from_its_milestone():
    schedule = StepSchedule(values=[2, 4, 8], milestones=[0.0, 0.5, 0.75], total_steps=100)
    assert [schedule(s) for s in (0, 49, 50, 74, 75, 100, 150)] == [2, 2, 4, 4, 8, 8, 8]
    with pytest.raises(ValueError, match="one value per milestone"):
        StepSchedule(values=[2, 8], milestones=[0.0], total_steps=100)
    with pytest.raises(ValueError, match="increase from 0"):
        StepSchedule(values=[2, 8], milestones=[0.5, 0.2], total_steps=100)


def test_no_weight_decay_on_bias_norm_and_mask_tokens():
    pred = VisionTransformerPredictor(
        img_size=32,
        num_frames=4,
        patch_size=8,
        embed_dim=48,
        predictor_embed_dim=32,
        depth=1,
        num_heads=2,
        num_mask_tokens=2,
    )
    decay, no_decay = param_groups([pred], weight_decay=0.04)
    names = {id(p): n for n, p in pred.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim == 2 for p in decay["params"])
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"mask_tokens.0", "mask_tokens.1", "predictor_norm.weight", "predictor_embed.bias"} <= no_decay_names
    assert decay["weight_decay"] == 0.04 and no_decay["weight_decay"] == 0.0


def test_ema_update():
    target, online = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = target.weight.detach().clone()
    ema_update(target, online, momentum=0.9)
    torch.testing.assert_close(target.weight, 0.9 * before + 0.1 * online.weight.detach())

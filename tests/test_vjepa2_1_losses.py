"""V-JEPA 2.1 loss pieces on small hand-checked cases: context distances and weights, the lambda ramp, targets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from jepa.losses import ContextLossRamp, context_distances, layer_norm_levels, weighted_l1_loss


def idx(*values: int) -> torch.Tensor:
    return torch.tensor([values])


def test_distances_around_one_masked_token():
    # 3x3 frame, the centre (token 4) masked: edge neighbours at 1, corners at sqrt(2); d = sqrt(distance)
    ctx = idx(0, 1, 2, 3, 5, 6, 7, 8)
    d = context_distances(ctx, idx(4), (1, 3, 3))
    corner, edge = 2**0.25, 1.0
    torch.testing.assert_close(d, torch.tensor([[corner, edge, corner, edge, edge, corner, edge, corner]]))


def test_distance_takes_the_nearest_masked_token_and_counts_frames():
    # 3x3 frame, tokens 0 and 8 masked: the centre is sqrt(2) from both, token 2 is 2 from both, token 1 is 1 from 0
    d = context_distances(idx(1, 2, 4), idx(0, 8), (1, 3, 3))
    torch.testing.assert_close(d, torch.tensor([[1.0, math.sqrt(2.0), 2**0.25]]))
    # (T', H', W') = (2, 1, 3): token 5 is (t=1, h=0, w=2), masked token 0 is (0, 0, 0): distance sqrt(1 + 4)
    torch.testing.assert_close(context_distances(idx(5), idx(0), (2, 1, 3)), torch.tensor([[5**0.25]]))


def test_distances_per_sample_and_resolution_offset():
    ctx = torch.tensor([[1, 2], [0, 2]])
    tgt = torch.tensor([[0], [1]])
    torch.testing.assert_close(context_distances(ctx, tgt, (1, 1, 3)), torch.tensor([[1.0, 2**0.5], [1.0, 1.0]]))
    # on a 32-row grid the reference divides distances by 32 // 16 = 2 before the square root
    far = context_distances(idx(4), idx(0), (1, 32, 32), offset_by_resolution=True)
    torch.testing.assert_close(far, torch.tensor([[2.0**0.5]]))
    with pytest.raises(ValueError, match="at least 16 rows"):
        context_distances(idx(4), idx(0), (1, 4, 4), offset_by_resolution=True)


def test_weighted_l1_is_an_unnormalised_mean():
    pred = torch.zeros(1, 2, 3)
    tgt = torch.ones(1, 2, 3)
    weights = 1.0 / torch.tensor([[1.0, 2.0]])  # d = 1 and d = 2
    assert weighted_l1_loss(pred, tgt, weights).item() == pytest.approx(0.75)
    assert weighted_l1_loss(pred, tgt).item() == pytest.approx(1.0)


def test_ramp_in_fractions_of_the_budget():
    ramp = ContextLossRamp(0.5, total_steps=1000)  # defaults 5% -> 10%: steps 50 -> 100
    assert [ramp(s) for s in (0, 49, 50, 75, 100, 999, 5000)] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.5, 0.5]


def test_ramp_defaults_reproduce_the_reference_schedule_for_its_budget():
    # vjepa2 Lambda_LinearWarmupHold: 0 before step 15k, linear to lambda at 30k, of 1000 epochs x 300 iterations
    ramp = ContextLossRamp(0.7, total_steps=300_000)
    assert ramp(14_999) == 0.0 and ramp(15_000) == 0.0
    assert ramp(22_500) == pytest.approx(0.35) and ramp(30_000) == 0.7 and ramp(299_999) == 0.7


def test_ramp_constant_and_bad_fractions():
    assert ContextLossRamp(0.5, 100, 0.0, 0.0)(0) == 0.5  # the reference's lambda_progressive=false
    with pytest.raises(ValueError, match="start_fraction <= end_fraction"):
        ContextLossRamp(0.5, 100, 0.2, 0.1)


def test_targets_normalise_each_level_alone():
    torch.manual_seed(0)
    low, high = torch.randn(2, 5, 8), 10 * torch.randn(2, 5, 8) + 3
    out = layer_norm_levels(torch.cat((low, high), dim=-1), num_levels=2)
    torch.testing.assert_close(out, torch.cat((F.layer_norm(low, (8,)), F.layer_norm(high, (8,))), dim=-1))
    assert not torch.allclose(out, F.layer_norm(torch.cat((low, high), dim=-1), (16,)), atol=1e-2)
    torch.testing.assert_close(layer_norm_levels(low, 1), F.layer_norm(low, (8,)))

"""Probe heads: shapes, gradients, and the cross-attention against its written-out formula."""

from __future__ import annotations

import pytest
import torch

from jepa.models.pooler import AttentiveClassifier, AttentivePooler, CrossAttention, LinearClassifier


@pytest.mark.parametrize("depth", [1, 3])
def test_attentive_classifier_shapes_and_backward(depth):
    head = AttentiveClassifier(embed_dim=48, num_classes=5, num_heads=2, depth=depth)
    x = torch.randn(3, 20, 48, requires_grad=True)
    logits = head(x)
    assert logits.shape == (3, 5)
    logits.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in head.parameters())
    assert len(head.pooler.blocks) == depth - 1


def test_pooler_queries_and_token_count_independence():
    pooler = AttentivePooler(num_queries=4, embed_dim=48, num_heads=2)
    assert pooler(torch.randn(2, 7, 48)).shape == (2, 4, 48)
    assert pooler(torch.randn(2, 33, 48)).shape == (2, 4, 48)
    # a pooled token does not depend on the order of the tokens it attends to (no position in the probe)
    x = torch.randn(2, 9, 48)
    torch.testing.assert_close(pooler(x), pooler(x[:, torch.randperm(9)]), rtol=1e-5, atol=1e-5)


def test_cross_attention_matches_formula():
    torch.manual_seed(0)
    attn = CrossAttention(dim=8, num_heads=2)
    q, x = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    qh = attn.q(q).view(2, 3, 2, 4).transpose(1, 2)
    k, v = attn.kv(x).view(2, 5, 2, 2, 4).permute(2, 0, 3, 1, 4)
    weights = (qh @ k.transpose(-1, -2) / 4**0.5).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 3, 8))
    torch.testing.assert_close(attn(q, x), expected, rtol=1e-5, atol=1e-6)


def test_linear_classifier_is_mean_pooled():
    head = LinearClassifier(embed_dim=16, num_classes=3)
    x = torch.randn(2, 10, 16)
    assert head(x).shape == (2, 3)
    torch.testing.assert_close(head(x), head(x.mean(1, keepdim=True)), rtol=1e-5, atol=1e-6)


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="must divide"):
        AttentiveClassifier(embed_dim=48, num_classes=2, num_heads=5)

from __future__ import annotations

import pytest
import torch

from jepa.models import vit
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer

TINY = dict(img_size=32, num_frames=4, patch_size=8, tubelet_size=2, embed_dim=48, depth=2, num_heads=2)


def tiny_encoder(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(**{**TINY, **kw})


def test_encoder_shapes_video_image_and_context():
    enc = tiny_encoder().eval()
    video = torch.randn(2, 3, 4, 32, 32)
    assert enc(video).shape == (2, 2 * 4 * 4, 48)
    assert enc(torch.randn(2, 3, 32, 32)).shape == (2, 16, 48)  # image: one tubelet
    assert enc(torch.randn(2, 3, 1, 32, 32)).shape == (2, 16, 48)
    assert enc(torch.randn(1, 3, 4, 32, 48)).shape == (1, 2 * 4 * 6, 48)  # non-square
    keep = torch.tensor([[0, 3, 7, 20], [1, 2, 30, 31]])
    assert enc(video, keep=keep).shape == (2, 4, 48)


def test_keep_all_tokens_equals_full_forward():
    enc = tiny_encoder().eval()
    video = torch.randn(2, 3, 4, 32, 32)
    keep = torch.arange(32).expand(2, -1)
    torch.testing.assert_close(enc(video, keep=keep), enc(video))


def test_bad_input_shape_is_a_clear_error():
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="does not tile"):
        enc(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        enc(torch.randn(3, 32, 32))


def test_activation_checkpointing_gives_same_output_and_grads():
    video = torch.randn(2, 3, 4, 32, 32)
    grads = []
    for ckpt in (False, True):
        enc = tiny_encoder(use_activation_checkpointing=ckpt)
        out = enc(video)
        out.square().mean().backward()
        grads.append((out.detach(), enc.blocks[0].attn.qkv.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_backward_reaches_every_parameter():
    enc = tiny_encoder()
    enc(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_predictor_is_order_equivariant_in_targets_and_invariant_in_context():
    torch.manual_seed(0)
    pred = VisionTransformerPredictor(
        **{k: TINY[k] for k in ("img_size", "num_frames", "patch_size", "tubelet_size")},
        embed_dim=48,
        predictor_embed_dim=32,
        depth=2,
        num_heads=2,
        zero_init_mask_tokens=False,
    ).eval()
    ctx_idx = torch.tensor([[0, 5, 9, 17], [2, 3, 4, 30]])
    tgt_idx = torch.tensor([[1, 6, 20], [10, 11, 31]])
    z_ctx = torch.randn(2, 4, 48)
    out = pred(z_ctx, ctx_idx, tgt_idx)
    assert out.shape == (2, 3, 48)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(pred(z_ctx, ctx_idx, tgt_idx[:, perm]), out[:, perm])
    cperm = torch.tensor([3, 1, 0, 2])
    torch.testing.assert_close(pred(z_ctx[:, cperm], ctx_idx[:, cperm], tgt_idx), out)
    # different mask tokens give different predictions
    assert not torch.allclose(pred(z_ctx, ctx_idx, tgt_idx, mask_index=1), out)


@pytest.mark.parametrize(
    "factory,dim,depth,heads",
    [
        ("vit_tiny", 192, 12, 3),
        ("vit_small", 384, 12, 6),
        ("vit_base", 768, 12, 12),
        ("vit_large", 1024, 24, 16),
        ("vit_huge", 1280, 32, 16),
        ("vit_giant", 1408, 40, 22),
    ],
)
def test_factory_sizes(factory, dim, depth, heads):
    with torch.device("meta"):
        model = getattr(vit, factory)(img_size=256, num_frames=16)
    assert (model.embed_dim, len(model.blocks), model.num_heads) == (dim, depth, heads)
    assert model.init_kwargs["embed_dim"] == dim

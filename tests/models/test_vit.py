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


def test_patch_embedding_gemm_equals_the_conv3d_and_embeds_only_kept_cubes():
    torch.manual_seed(0)
    embed = vit.PatchEmbed3D(patch_size=8, tubelet_size=2, in_chans=3, embed_dim=48)
    video = torch.randn(2, 3, 4, 32, 48)
    conv = embed.proj(video).flatten(2).transpose(1, 2)  # the reference's Conv3d tokens, (B, N, D)
    torch.testing.assert_close(embed(video), conv, rtol=1e-5, atol=1e-5)
    keep = torch.tensor([[0, 5, 17, 40], [2, 3, 30, 47]])
    torch.testing.assert_close(embed(video, keep), vit.gather_tokens(conv, keep), rtol=1e-5, atol=1e-5)
    assert list(embed.state_dict()) == ["proj.weight", "proj.bias"]  # checkpoints keep the Conv3d layout


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
        ("vit_gigantic", 1664, 48, 26),
    ],
)
def test_factory_sizes(factory, dim, depth, heads):
    with torch.device("meta"):
        model = getattr(vit, factory)(img_size=256, num_frames=16)
    assert (model.embed_dim, len(model.blocks), model.num_heads) == (dim, depth, heads)
    assert model.init_kwargs["embed_dim"] == dim


# --- V-JEPA 2.1 options -------------------------------------------------------------------------------------------

V21 = dict(taps=[0, 1], img_temporal_dim_size=1, modality_embedding=True, tiled_rope=False, interpolate_rope=True)


def test_taps_give_levels_for_training_and_the_last_norm_for_inference():
    enc = tiny_encoder(**V21).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    levels = enc(video, all_levels=True)
    assert levels.shape == (2, 32, 96) and enc.num_levels == 2
    torch.testing.assert_close(enc(video), levels[..., 48:])  # the last tap is the last block
    # the first level is block 0's output through its own norm: each level is normalised on its own
    torch.testing.assert_close(
        levels[..., :48].mean(-1), enc.norms_block[0].bias.mean().expand(2, 32), atol=1e-5, rtol=0
    )
    one = tiny_encoder(**V21, num_output_levels=1).eval()
    torch.testing.assert_close(one(video, all_levels=True), one(video))
    v2 = tiny_encoder().eval()
    torch.testing.assert_close(v2(video, all_levels=True), v2(video))  # V-JEPA 2: one level


def test_taps_with_activation_checkpointing_give_same_output_and_grads():
    video = torch.randn(2, 3, 4, 32, 32)
    results = []
    for ckpt in (False, True):
        enc = tiny_encoder(**V21, use_activation_checkpointing=ckpt)
        out = enc(video, all_levels=True)
        out.square().mean().backward()
        results.append((out.detach(), enc.blocks[0].attn.qkv.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_images_take_the_image_tokenizer():
    enc = tiny_encoder(**V21).eval()
    image = torch.randn(2, 3, 1, 32, 32)
    assert enc.grid_shape(image) == (1, 4, 4) and enc(image).shape == (2, 16, 48)
    assert enc(image[:, :, 0]).shape == (2, 16, 48)  # (B, C, H, W) too
    out = enc(image)
    with torch.no_grad():
        enc.patch_embed.proj.weight.add_(1.0)  # the video tokenizer plays no part for images
    torch.testing.assert_close(enc(image), out)
    with torch.no_grad():
        enc.img_mod_embed.add_(1.0)
    assert not torch.allclose(enc(image), out)


def test_interpolated_rope_makes_positions_resolution_independent():
    """With `interpolate_rope` a 2x2 and a 4x4 frame span the same position range; the rotation then differs."""
    from jepa.models.rope import interpolate_positions, token_grid_positions

    pos = interpolate_positions(token_grid_positions(torch.arange(16), 4, 4), 4, 4, 16)
    assert pos[:, 1].max() == 15 and pos[:, 2].max() == 15 and pos[:, 0].max() == 0
    pos = interpolate_positions(token_grid_positions(torch.arange(8), 2, 2), 2, 2, 16)
    assert pos[:, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and pos[:, 1].max() == 15  # time is not rescaled
    video = torch.randn(1, 3, 4, 32, 32)
    a, b = tiny_encoder(**V21).eval(), tiny_encoder(**{**V21, "interpolate_rope": False}).eval()
    assert not torch.allclose(a(video), b(video))


def test_bad_taps_are_a_clear_error():
    with pytest.raises(ValueError, match="taps must be increasing"):
        tiny_encoder(taps=[1, 0])
    with pytest.raises(ValueError, match="taps must be increasing"):
        tiny_encoder(taps=[0, 2])
    with pytest.raises(ValueError, match="num_output_levels"):
        tiny_encoder(taps=[0, 1], num_output_levels=3)


def test_predictor_levels_heads_and_modality():
    torch.manual_seed(0)
    geometry = {k: TINY[k] for k in ("img_size", "num_frames", "patch_size", "tubelet_size")}
    pred = VisionTransformerPredictor(
        **geometry,
        embed_dim=48,
        predictor_embed_dim=32,
        depth=1,
        num_heads=2,
        num_levels=2,
        out_embed_dim=40,
        return_all_tokens=True,
        modality_embedding=True,
    ).eval()
    ctx_idx, tgt_idx = torch.tensor([[0, 5, 9, 17]]), torch.tensor([[1, 6, 20]])
    z_ctx = torch.randn(1, 4, 96)
    z_pred, z_ctx_pred = pred(z_ctx, ctx_idx, tgt_idx, return_context=True)
    assert z_pred.shape == (1, 3, 80) and z_ctx_pred.shape == (1, 4, 80) and pred.out_dim == 80
    torch.testing.assert_close(pred(z_ctx, ctx_idx, tgt_idx), z_pred)
    with torch.no_grad():
        pred.img_mod_embed.add_(1.0)
    assert not torch.allclose(pred(z_ctx, ctx_idx, tgt_idx, is_image=True), z_pred)
    torch.testing.assert_close(pred(z_ctx, ctx_idx, tgt_idx), z_pred)  # video tokens do not see the image vector
    plain = VisionTransformerPredictor(**geometry, embed_dim=48, predictor_embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="return_all_tokens"):
        plain(torch.randn(1, 4, 48), ctx_idx, tgt_idx, return_context=True)

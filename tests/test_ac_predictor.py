"""V-JEPA 2-AC predictor: released-layout parity, action-dimension check, block-causal attention, rollouts."""

from __future__ import annotations

import pytest
import torch

from jepa.checkpoints import load_released_ac, load_world_model
from jepa.models.ac_predictor import ACWorldModel, VisionTransformerPredictorAC, block_causal_mask
from jepa.models.vit import VisionTransformer

# tiny: 32x32 frames with 8x8 patches (16 tokens per frame), predictor 48 wide with 2 heads of 24
TINY = dict(img_size=32, patch_size=8, embed_dim=40, predictor_embed_dim=48, depth=2, num_heads=2)


def fixture_geometry(cfg: dict) -> tuple[int, int, int]:
    """(latent frames, tokens per frame, width) of the fixture's video."""
    return cfg["frames"] // cfg["tubelet_size"], (cfg["img"] // cfg["patch_size"]) ** 2, cfg["embed_dim"]


def test_released_ac_predictor_matches_reference(vjepa2_fixture):
    cfg = vjepa2_fixture["config"]
    modules = load_released_ac(vjepa2_fixture["ac_checkpoint"], num_heads=cfg["ac_heads"], img_size=cfg["img"])
    inputs, outputs = vjepa2_fixture["inputs"], vjepa2_fixture["outputs"]
    encoder, predictor = modules["encoder"].eval(), modules["predictor"].eval()
    with torch.no_grad():
        z = encoder(inputs["video"])
        out = predictor(z, inputs["actions"], inputs["states"])
    T, N, D = fixture_geometry(cfg)
    assert out.shape == (cfg["batch"], T * N, D)
    torch.testing.assert_close(out, outputs["ac_predictor"], atol=1e-4, rtol=0)


def test_released_ac_rejects_other_action_dim(vjepa2_fixture):
    cfg = vjepa2_fixture["config"]
    A, other = cfg["ac_action_dim"], cfg["ac_action_dim"] + 1
    predictor = VisionTransformerPredictorAC(
        img_size=cfg["img"],
        patch_size=cfg["patch_size"],
        tubelet_size=cfg["tubelet_size"],
        embed_dim=cfg["embed_dim"],
        predictor_embed_dim=cfg["ac_dim"],
        depth=cfg["ac_depth"],
        num_heads=cfg["ac_heads"],
        action_dim=other,
        state_dim=A,
    )
    with pytest.raises(ValueError, match=rf"{A}-D actions .* action_dim={other}: set action_dim={A}"):
        load_released_ac(vjepa2_fixture["ac_checkpoint"], predictor=predictor)


def test_released_ac_as_world_model(vjepa2_fixture):
    cfg = vjepa2_fixture["config"]
    wm = load_world_model(vjepa2_fixture["ac_checkpoint"], num_heads=cfg["ac_heads"], img_size=cfg["img"])
    _, N, D = fixture_geometry(cfg)
    A = cfg["ac_action_dim"]
    frames = torch.randn(1, 3, 2, cfg["img"], cfg["img"])
    z = wm.encode_frames(frames)
    assert z.shape == (1, 2, N, D)
    # planning: raw images as an environment renders them (another size), preprocessed by the world model itself
    images = torch.randint(0, 256, (1, 2, cfg["img"] + 1, cfg["img"] + 1, 3), dtype=torch.uint8)
    assert wm.encode(images).shape == (1, 2, N, D)
    assert wm.rollout(z, torch.zeros(1, 4, A), torch.zeros(1, 2, A)).shape == (1, 3, N, D)


def test_block_causal_mask_layout():
    mask = block_causal_mask(3, 2)
    assert mask.shape == (6, 6)
    assert mask[0, :2].all() and not mask[0, 2:].any()  # frame 0 sees only itself
    assert mask[5].all()  # the last frame sees everything


@pytest.mark.parametrize("k", [1, 2])
def test_attention_is_block_causal(k):
    torch.manual_seed(0)
    predictor = VisionTransformerPredictorAC(**TINY, action_dim=3, state_dim=2).eval()
    T, N = 4, 16
    z, actions, states = torch.randn(1, T * N, 40), torch.randn(1, T, 3), torch.randn(1, T, 2)
    with torch.no_grad():
        base = predictor(z, actions, states)
        z2 = z.clone()
        z2[:, k * N : (k + 1) * N] += 1.0  # frame k's tokens
        a2 = actions.clone()
        a2[:, k] += 1.0  # frame k's action
        for out in (predictor(z2, actions, states), predictor(z, a2, states)):
            torch.testing.assert_close(out[:, : k * N], base[:, : k * N], atol=1e-6, rtol=0)
            assert (out[:, k * N :] - base[:, k * N :]).abs().max() > 1e-3  # frames >= k do see it


def test_extrinsics_token_and_error():
    predictor = VisionTransformerPredictorAC(**TINY, action_dim=3, state_dim=3, use_extrinsics=True, extrinsics_dim=5)
    z = torch.randn(2, 2 * 16, 40)
    out = predictor(z, torch.randn(2, 2, 3), torch.randn(2, 2, 3), torch.randn(2, 2, 5))
    assert out.shape == z.shape
    with pytest.raises(ValueError, match="use_extrinsics"):
        predictor(z, torch.randn(2, 2, 3), torch.randn(2, 2, 3))


def test_rollout_matches_teacher_forcing_first_step_and_integrates_states():
    torch.manual_seed(0)
    encoder = VisionTransformer(img_size=32, patch_size=8, embed_dim=40, depth=1, num_heads=2)
    wm = ACWorldModel(encoder, VisionTransformerPredictorAC(**TINY, action_dim=2, state_dim=2)).eval()
    z = wm.encode_frames(torch.randn(3, 3, 2, 32, 32))  # (B, T, N, D)
    actions, states = torch.randn(3, 5, 2), torch.randn(3, 2, 2)
    with torch.no_grad():
        pred = wm.rollout(z, actions, states)
        assert pred.shape == (3, 4, 16, 40)
        # the first rolled-out frame is the teacher-forced prediction from the true context
        torch.testing.assert_close(pred[:, 0], wm.step(z, actions[:, :2], states)[:, -1])
        # the second one sees state_2 = state_1 + action_1
        s2 = torch.cat((states, states[:, -1:] + actions[:, 1:2]), dim=1)
        torch.testing.assert_close(pred[:, 1], wm.step(torch.cat((z, pred[:, :1]), 1), actions[:, :3], s2)[:, -1])


def test_residual_world_model_starts_from_repeat_last():
    torch.manual_seed(0)
    encoder = VisionTransformer(img_size=32, patch_size=8, embed_dim=40, depth=1, num_heads=2)
    predictor = VisionTransformerPredictorAC(**TINY, action_dim=2, state_dim=2)
    torch.nn.init.zeros_(predictor.predictor_proj.weight)
    wm = ACWorldModel(encoder, predictor, residual=True).eval()
    z = wm.encode_frames(torch.randn(2, 3, 1, 32, 32))
    with torch.no_grad():
        pred = wm.rollout(z, torch.randn(2, 3, 2), torch.randn(2, 1, 2))
    torch.testing.assert_close(pred, z.expand(-1, 3, -1, -1), atol=1e-5, rtol=0)


def test_action_and_state_scaling_is_input_normalisation():
    torch.manual_seed(0)
    scaled = VisionTransformerPredictorAC(
        **TINY, action_dim=2, state_dim=2, action_scale=4.0, state_offset=32.0, state_scale=16.0
    ).eval()
    plain = VisionTransformerPredictorAC(**TINY, action_dim=2, state_dim=2).eval()
    plain.load_state_dict(scaled.state_dict())  # same parameters: the scaling adds none
    z, actions, states = torch.randn(2, 2 * 16, 40), 4 * torch.randn(2, 2, 2), 64 * torch.rand(2, 2, 2)
    with torch.no_grad():
        out = scaled(z, actions, states)
        torch.testing.assert_close(out, plain(z, actions / 4.0, (states - 32.0) / 16.0))
        assert not torch.allclose(out, plain(z, actions, states))
    assert scaled.init_kwargs["state_scale"] == 16.0  # saved in checkpoints' module_kwargs
    halved = VisionTransformerPredictorAC(**TINY, action_dim=2, state_dim=2, output_scale=0.5).eval()
    halved.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(halved(z, actions, states), 0.5 * plain(z, actions, states))


@pytest.mark.parametrize("residual", [False, True])
def test_cached_rollout_equals_recomputing_every_frame(residual):
    torch.manual_seed(0)
    predictor = VisionTransformerPredictorAC(**TINY, action_dim=2, state_dim=2).eval()
    model = ACWorldModel(torch.nn.Identity(), predictor, integrate_states=True, residual=residual)
    latents = torch.nn.functional.layer_norm(torch.randn(3, 2, 16, 40), (40,))  # T0 = 2 context frames
    actions, states = torch.randn(3, 2 + 3, 2), torch.randn(3, 2, 2)  # 4 predicted frames
    with torch.no_grad():
        cached = model.rollout(latents, actions, states)
        full = model._rollout_recompute(latents, actions, states, 4)
    assert cached.shape == (3, 4, 16, 40)
    torch.testing.assert_close(cached, full, atol=2e-5, rtol=1e-5)


def test_incremental_frames_equal_the_full_sequence():
    torch.manual_seed(0)
    predictor = VisionTransformerPredictorAC(**TINY, action_dim=2, state_dim=2).eval()
    z, actions, states = torch.randn(2, 3 * 16, 40), torch.randn(2, 3, 2), torch.randn(2, 3, 2)
    cache = [{} for _ in predictor.predictor_blocks]
    with torch.no_grad():
        full = predictor(z, actions, states)
        first = predictor.forward_incremental(z[:, :16], actions[:, :1], states[:, :1], cache, first_frame=0)
        rest = predictor.forward_incremental(z[:, 16:], actions[:, 1:], states[:, 1:], cache, first_frame=1)
    torch.testing.assert_close(torch.cat((first, rest), dim=1), full, atol=2e-5, rtol=1e-5)


def test_bf16_rollouts_are_an_option_close_to_fp32_that_keeps_a_callers_autocast():
    torch.manual_seed(0)
    predictor = VisionTransformerPredictorAC(**TINY, action_dim=2, state_dim=2).eval()
    model = ACWorldModel(torch.nn.Identity(), predictor)
    latents = torch.nn.functional.layer_norm(torch.randn(3, 1, 16, 40), (40,))
    actions, states = torch.randn(3, 2, 2), torch.randn(3, 1, 2)
    with torch.no_grad():
        fp32 = model.rollout(latents, actions, states)
        fast = model.set_rollout_precision("bf16").rollout(latents, actions, states)
        # "fp32" leaves an enclosing autocast (a bf16-mixed training step) in force
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outer = model.set_rollout_precision("fp32").rollout(latents, actions, states)
    assert fast.dtype == torch.float32 and not torch.equal(fast, fp32)
    torch.testing.assert_close(fast, fp32, atol=0.1, rtol=0.05)
    torch.testing.assert_close(outer, fast)
    with pytest.raises(ValueError, match="rollout_precision"):
        model.set_rollout_precision("fp16")

"""Parity with the reference implementation: released V-JEPA 2 layout -> our modules -> its outputs (1e-4)."""

from __future__ import annotations

import pytest
import torch

from jepa.checkpoints import load_encoder, load_modules, load_released_vjepa2
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer

ATOL = 1e-4


def geometry(cfg: dict) -> dict:
    """The fixture's input geometry, as our constructors take it."""
    return dict(
        img_size=cfg["img"], num_frames=cfg["frames"], patch_size=cfg["patch_size"], tubelet_size=cfg["tubelet_size"]
    )


def fixture_modules(cfg: dict) -> tuple[VisionTransformer, VisionTransformerPredictor]:
    encoder = VisionTransformer(
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["heads"],
        norm_eps=cfg["layer_norm_eps"],
        **geometry(cfg),
    )
    predictor = VisionTransformerPredictor(
        embed_dim=cfg["embed_dim"],
        predictor_embed_dim=cfg["pred_dim"],
        depth=cfg["pred_depth"],
        num_heads=cfg["pred_heads"],
        num_mask_tokens=cfg["num_mask_tokens"],
        norm_eps=cfg["layer_norm_eps"],
        **geometry(cfg),
    )
    return encoder, predictor


@pytest.mark.parametrize("which", ["target", "context"])
def test_released_layout_reproduces_reference_outputs(vjepa2_fixture, which):
    encoder, predictor = fixture_modules(vjepa2_fixture["config"])
    load_released_vjepa2(vjepa2_fixture["checkpoint"], encoder, predictor, which=which)
    encoder.eval(), predictor.eval()
    inputs, outputs = vjepa2_fixture["inputs"], vjepa2_fixture["outputs"]
    with torch.no_grad():
        full = encoder(inputs["video"])
        ctx = encoder(inputs["video"], keep=inputs["context_idx"])
        pred = predictor(
            outputs["encoder_context"], inputs["context_idx"], inputs["target_idx"], mask_index=inputs["mask_index"]
        )
    torch.testing.assert_close(full, outputs["encoder"], atol=ATOL, rtol=0)
    torch.testing.assert_close(ctx, outputs["encoder_context"], atol=ATOL, rtol=0)
    torch.testing.assert_close(pred, outputs["predictor"], atol=ATOL, rtol=0)
    # our own predictions chained from our own context features agree too
    with torch.no_grad():
        chained = predictor(ctx, inputs["context_idx"], inputs["target_idx"], mask_index=inputs["mask_index"])
    torch.testing.assert_close(chained, outputs["predictor"], atol=ATOL, rtol=0)


def test_untiled_rope_does_not_match_released_weights(vjepa2_fixture):
    """The compat switch matters: the interleaved (fixed) RoPE layout gives different features."""
    cfg = vjepa2_fixture["config"]
    encoder = VisionTransformer(
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["heads"],
        norm_eps=cfg["layer_norm_eps"],
        tiled_rope=False,
        **geometry(cfg),
    )
    load_released_vjepa2(vjepa2_fixture["checkpoint"], encoder)
    with torch.no_grad():
        out = encoder.eval()(vjepa2_fixture["inputs"]["video"])
    assert (out - vjepa2_fixture["outputs"]["encoder"]).abs().max() > 1e-3


def test_load_encoder_infers_size_from_released_file(vjepa2_fixture, tmp_path):
    path = tmp_path / "released.pt"
    torch.save(vjepa2_fixture["checkpoint"], path)
    encoder = load_encoder(path)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    with torch.no_grad():
        out = encoder(vjepa2_fixture["inputs"]["video"])
    torch.testing.assert_close(out, vjepa2_fixture["outputs"]["encoder"], atol=ATOL, rtol=0)


def test_wrong_encoder_size_is_a_clear_error(vjepa2_fixture):
    cfg = vjepa2_fixture["config"]
    wrong = VisionTransformer(embed_dim=cfg["embed_dim"] // 2, depth=cfg["depth"] + 1, num_heads=1, **geometry(cfg))
    expected = rf"does not fit(.|\n)*{cfg['embed_dim']} wide, {cfg['depth']} deep, patch {cfg['patch_size']}"
    with pytest.raises(ValueError, match=expected):
        load_released_vjepa2(vjepa2_fixture["checkpoint"], wrong)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_encoder(tmp_path / "nope.pt")


def _tiny_pretraining_checkpoint() -> dict:
    """Our Lightning layout: prefixed weights of each module plus the constructor kwargs that rebuild it."""
    geometry = dict(img_size=16, num_frames=2, patch_size=8, tubelet_size=2)
    encoder = VisionTransformer(embed_dim=32, depth=2, num_heads=2, **geometry)
    predictor = VisionTransformerPredictor(embed_dim=32, predictor_embed_dim=16, depth=1, num_heads=2, **geometry)
    target = VisionTransformer(embed_dim=32, depth=2, num_heads=2, **geometry)
    state = {}
    for prefix, module in (("encoder.", encoder), ("target_encoder.", target), ("predictor.", predictor)):
        state.update({prefix + k: v for k, v in module.state_dict().items()})
    return {"state_dict": state, "module_kwargs": {"encoder": encoder.init_kwargs, "predictor": predictor.init_kwargs}}


def test_one_loader_gives_every_module_of_a_file_by_name(vjepa2_fixture, tmp_path):
    ours = tmp_path / "last.ckpt"
    ckpt = _tiny_pretraining_checkpoint()
    torch.save(ckpt, ours)
    modules = load_modules(ours)
    assert set(modules) == {"encoder", "target_encoder", "predictor"}
    for name, module in modules.items():
        assert not module.training and not any(p.requires_grad for p in module.parameters())
        for key, value in module.state_dict().items():
            torch.testing.assert_close(value, ckpt["state_dict"][f"{name}.{key}"], atol=0, rtol=0)
    # the released layout under the same names; the built target encoder reproduces the reference
    released = load_modules(vjepa2_fixture["checkpoint"])
    assert set(released) == {"encoder", "target_encoder", "predictor"}
    with torch.no_grad():
        out = released["target_encoder"](vjepa2_fixture["inputs"]["video"])
    torch.testing.assert_close(out, vjepa2_fixture["outputs"]["encoder"], atol=ATOL, rtol=0)


def test_one_loader_fills_given_modules_and_names_what_a_file_lacks(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save(_tiny_pretraining_checkpoint(), path)
    mine = VisionTransformer(**_tiny_pretraining_checkpoint()["module_kwargs"]["encoder"])
    assert (
        load_modules(path, ["target_encoder"], into={"target_encoder": mine}, freeze=False)["target_encoder"] is mine
    )
    assert mine.training
    with pytest.raises(
        KeyError, match=r"last\.ckpt holds no world_model: it holds \['encoder', 'predictor', 'target_encoder'\]"
    ):
        load_modules(path, ["world_model"])

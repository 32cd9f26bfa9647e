"""V-JEPA 2.1 parity: released 2.1 layouts -> our modules -> the reference's outputs (1e-4), plus loader behaviour.

The fixture (`shared/fixtures/vjepa2_1_official_public.pt`, README there) holds a small model saved in the released
2.1 layouts with the outputs of vjepa2 `app/vjepa_2_1`; its `config` gives the reference constructor arguments,
which `encoder_from_reference` / `predictor_from_reference` map to ours.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from jepa.checkpoints import (
    infer_encoder_kwargs,
    infer_predictor_kwargs,
    load_encoder,
    load_released_vjepa2,
    released_state_dict,
)
from jepa.losses import context_distances, layer_norm_levels
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VJEPA2_1_TAPS, VisionTransformer

ATOL = 1e-4
SHARED = Path(os.environ.get("JEPA_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="module")
def fx() -> dict:
    """The 2.1 parity fixture; missing it is an error, never a skip."""
    path = SHARED / "fixtures" / "vjepa2_1_official_public.pt"
    if not path.is_file():
        raise FileNotFoundError(f"parity fixture missing: {path} (set JEPA_SHARED_DIR to the shared/ folder)")
    return torch.load(path, map_location="cpu", weights_only=True)


def encoder_from_reference(cfg: dict) -> VisionTransformer:
    """Our encoder for the reference's `VisionTransformer(**encoder_kwargs)` with RoPE, SDPA and GELU."""
    kw = cfg["encoder_kwargs"]
    assert kw["use_rope"] and not kw["use_silu"] and kw["n_registers"] == 0 and not kw["has_cls_first"]
    assert kw["img_size"][0] == kw["img_size"][1]
    return VisionTransformer(
        img_size=kw["img_size"][0],
        patch_size=kw["patch_size"],
        num_frames=kw["num_frames"],
        tubelet_size=kw["tubelet_size"],
        in_chans=kw["in_chans"],
        embed_dim=kw["embed_dim"],
        depth=kw["depth"],
        num_heads=kw["num_heads"],
        mlp_ratio=kw["mlp_ratio"],
        qkv_bias=kw["qkv_bias"],
        norm_eps=cfg["layer_norm_eps"],
        tiled_rope=cfg["rope_layout"] == "tiled",
        taps=cfg["hierarchical_layers"],
        num_output_levels=kw["n_output_distillation"],
        img_temporal_dim_size=kw["img_temporal_dim_size"],
        modality_embedding=kw["modality_embedding"],
        interpolate_rope=kw["interpolate_rope"],
    ).eval()


def predictor_from_reference(cfg: dict, kw: dict, **changes) -> VisionTransformerPredictor:
    """Our predictor for the reference's `vit_predictor(**kw)` (its `n_output_distillation` = our levels; its
    `teacher_embed_dim` = our levels * out_embed_dim)."""
    kw = {**kw, **changes}
    assert kw["use_rope"] and kw["use_mask_tokens"] and kw["chop_last_n_tokens"] == 0
    levels = kw["n_output_distillation"]
    teacher = kw["teacher_embed_dim"]
    return VisionTransformerPredictor(
        img_size=kw["img_size"][0],
        patch_size=kw["patch_size"],
        num_frames=kw["num_frames"],
        tubelet_size=kw["tubelet_size"],
        embed_dim=kw["embed_dim"],
        predictor_embed_dim=kw["predictor_embed_dim"],
        depth=kw["depth"],
        num_heads=kw["num_heads"],
        norm_eps=cfg["layer_norm_eps"],
        num_mask_tokens=kw["num_mask_tokens"],
        tiled_rope=cfg["rope_layout"] == "tiled",
        num_levels=levels,
        out_embed_dim=None if teacher is None else teacher // levels,
        return_all_tokens=kw["return_all_tokens"],
        modality_embedding=kw["modality_embedding"] and kw["img_temporal_dim_size"] is not None,
        interpolate_rope=kw["interpolate_rope"],
    ).eval()


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def token_grid(cfg: dict, image: bool = False) -> tuple[int, int, int]:
    """(T', H', W') of the fixture's square video (or image) input."""
    side = cfg["img_size"] // cfg["patch_size"]
    return (1 if image else cfg["num_frames"] // cfg["tubelet_size"]), side, side


@torch.no_grad()
def test_target_encoder_outputs(fx):
    cfg, inp, out = fx["config"], fx["inputs"], fx["outputs"]
    enc = encoder_from_reference(cfg)
    load_released_vjepa2(fx["checkpoint"], enc, which="target")
    D = cfg["embed_dim"]
    close(enc(inp["video"]), out["encoder"])
    hier = enc(inp["video"], all_levels=True)
    close(hier, out["encoder_hierarchical"])
    close(layer_norm_levels(hier, hier.size(-1) // D), out["encoder_targets"])
    close(enc(inp["image"]), out["encoder_image"])
    close(enc(inp["image"], all_levels=True), out["encoder_image_hierarchical"])
    close(enc(inp["video_rect"]), out["encoder_video_rect"])
    close(enc(inp["image_rect"]), out["encoder_image_rect"])


@torch.no_grad()
def test_context_encoder_outputs(fx):
    cfg, inp, out = fx["config"], fx["inputs"], fx["outputs"]
    enc = encoder_from_reference(cfg)
    load_released_vjepa2(fx["checkpoint"], enc, which="context")
    close(enc(inp["video"], keep=inp["context_idx"], all_levels=True), out["encoder_context"])
    close(enc(inp["video"], keep=inp["context_idx"]), out["encoder_context_last"])
    close(enc(inp["image"], keep=inp["image_context_idx"], all_levels=True), out["encoder_image_context"])


@torch.no_grad()
def test_predictor_heads_video_and_image(fx):
    cfg, inp, out = fx["config"], fx["inputs"], fx["outputs"]
    pred = predictor_from_reference(cfg, cfg["predictor_kwargs"])
    load_released_vjepa2(fx["checkpoint"], encoder_from_reference(cfg), pred)
    z_pred, z_ctx = pred(
        out["encoder_context"],
        inp["context_idx"],
        inp["target_idx"],
        mask_index=inp["mask_index"],
        return_context=True,
    )
    close(z_pred, out["predictor_pred"])
    close(z_ctx, out["predictor_context"])
    z_pred, z_ctx = pred(
        out["encoder_image_context"],
        inp["image_context_idx"],
        inp["image_target_idx"],
        mask_index=inp["image_mask_index"],
        grid=token_grid(cfg, image=True),
        is_image=True,
        return_context=True,
    )
    close(z_pred, out["predictor_image_pred"])
    close(z_ctx, out["predictor_image_context"])
    # the default call returns the masked-token head alone, as in V-JEPA 2
    close(
        pred(out["encoder_context"], inp["context_idx"], inp["target_idx"], inp["mask_index"]), out["predictor_pred"]
    )


@torch.no_grad()
def test_hub_style_predictor_without_rope_interpolation(fx):
    cfg, inp, out = fx["config"], fx["inputs"], fx["outputs"]
    pred = predictor_from_reference(cfg, cfg["predictor_kwargs"], interpolate_rope=False)
    load_released_vjepa2(fx["checkpoint"], encoder_from_reference(cfg), pred)
    z_pred = pred(out["encoder_context"], inp["context_idx"], inp["target_idx"], mask_index=inp["mask_index"])
    close(z_pred, out["predictor_hubrope_pred"])
    assert (z_pred - out["predictor_pred"]).abs().max() > 1e-3  # the switch matters


@torch.no_grad()
def test_distilled_layout_and_predictor(fx):
    cfg, inp, out = fx["config"], fx["inputs"], fx["outputs"]
    enc = encoder_from_reference(cfg)
    pred = predictor_from_reference(cfg, cfg["predictor_distilled_kwargs"])
    load_released_vjepa2(fx["checkpoint_distilled"], enc, pred, which="target")  # ema_encoder
    close(enc(inp["video"]), out["encoder"])
    load_released_vjepa2(fx["checkpoint_distilled"], enc, which="context")
    z_ctx = enc(inp["video"], keep=inp["context_idx"])
    close(z_ctx, out["encoder_context_last"])
    z_pred, z_ctx_pred = pred(z_ctx, inp["context_idx"], inp["target_idx"], inp["mask_index"], return_context=True)
    close(z_pred, out["predictor_distilled_pred"])
    close(z_ctx_pred, out["predictor_distilled_context"])


@torch.no_grad()
def test_chained_model_reproduces_reference(fx):
    """Our own context features fed to our predictor agree too (no reliance on the fixture's intermediate)."""
    cfg, inp, out = fx["config"], fx["inputs"], fx["outputs"]
    modules = load_released_vjepa2(
        fx["checkpoint"],
        encoder_from_reference(cfg),
        predictor_from_reference(cfg, cfg["predictor_kwargs"]),
        which="context",
    )
    z_ctx = modules["encoder"](inp["video"], keep=inp["context_idx"], all_levels=True)
    close(modules["predictor"](z_ctx, inp["context_idx"], inp["target_idx"], inp["mask_index"]), out["predictor_pred"])


def test_context_distances(fx):
    inp, out = fx["inputs"], fx["outputs"]
    side = fx["config"]["context_distance"]["grid_size"]
    grid_t = fx["inputs"]["video"].shape[2] // fx["config"]["tubelet_size"]
    close(context_distances(inp["context_idx"], inp["target_idx"], (grid_t, side, side)), out["context_distance"])
    close(
        context_distances(inp["image_context_idx"], inp["image_target_idx"], (1, side, side)),
        out["image_context_distance"],
    )


@torch.no_grad()
def test_loader_infers_2_1_models_from_the_files(fx, tmp_path):
    """Without configured modules: sizes and 2.1 options come from the file (taps given: depth 5 is not released)."""
    cfg, inp, out = fx["config"], fx["inputs"], fx["outputs"]
    enc_sd = released_state_dict(fx["checkpoint"]["target_encoder"])
    kw = infer_encoder_kwargs(enc_sd, taps=cfg["hierarchical_layers"])
    assert kw["img_temporal_dim_size"] == 1 and kw["modality_embedding"] and not kw["tiled_rope"]
    geometry = dict(img_size=cfg["img_size"], num_frames=cfg["num_frames"], patch_size=cfg["patch_size"])
    pred_kw = infer_predictor_kwargs(released_state_dict(fx["checkpoint"]["predictor"]), **geometry)
    expected = (cfg["pred_levels"], cfg["embed_dim"], cfg["pred_num_mask_tokens"])
    assert (pred_kw["num_levels"], pred_kw["out_embed_dim"], pred_kw["num_mask_tokens"]) == expected
    assert pred_kw["return_all_tokens"] and pred_kw["num_heads"] == cfg["pred_num_heads"]
    modules = load_released_vjepa2(
        fx["checkpoint"], VisionTransformer(**kw).eval(), VisionTransformerPredictor(**pred_kw).eval()
    )
    close(modules["encoder"](inp["video"]), out["encoder"])
    close(
        modules["predictor"](out["encoder_context"], inp["context_idx"], inp["target_idx"], inp["mask_index"]),
        out["predictor_pred"],
    )
    dist_kw = infer_predictor_kwargs(released_state_dict(fx["checkpoint_distilled"]["predictor"]))
    assert (dist_kw["num_levels"], dist_kw["out_embed_dim"]) == (1, cfg["teacher_embed_dim"])
    # build_predictor: the distilled file's one-level predictor from its weights alone
    built = load_released_vjepa2(fx["checkpoint_distilled"], encoder_from_reference(cfg), build_predictor=True)
    # (the built predictor's nominal geometry is the release's, so the token grid of the indices is passed)
    z_pred = built["predictor"].eval()(
        out["encoder_context_last"], inp["context_idx"], inp["target_idx"], inp["mask_index"], grid=token_grid(cfg)
    )
    close(z_pred, out["predictor_distilled_pred"])


def test_load_encoder_reads_a_released_2_1_file_of_a_released_depth(fx, tmp_path):
    """A 2.1 file of a released depth needs no configuration: taps from the depth, the EMA key from the layout."""
    cfg = fx["config"]
    enc_sd = released_state_dict(fx["checkpoint_distilled"]["ema_encoder"])
    # grow the fixture to the smallest released depth with as many taps as it has norms (ViT-B: 12 blocks, 2/5/8/11)
    depth, taps = min((d, t) for d, t in VJEPA2_1_TAPS.items() if d >= cfg["depth"] and len(t) == cfg["n_levels"])
    last = f"blocks.{cfg['depth'] - 1}."
    for i in range(cfg["depth"], depth):
        enc_sd.update({k.replace(last, f"blocks.{i}.", 1): v for k, v in enc_sd.items() if k.startswith(last)})
    path = tmp_path / "vjepa2_1_like.pt"
    torch.save({"ema_encoder": {f"module.backbone.{k}": v for k, v in enc_sd.items()}, "encoder": {}}, path)
    encoder = load_encoder(path)
    assert encoder.taps == list(taps) and not encoder.training
    _, H, W = token_grid(cfg, image=True)
    assert encoder(fx["inputs"]["image"]).shape == (cfg["batch"], H * W, cfg["embed_dim"])


def test_unreleased_depth_without_taps_is_a_clear_error(fx):
    enc_sd = released_state_dict(fx["checkpoint"]["target_encoder"])
    if fx["config"]["depth"] in VJEPA2_1_TAPS:  # a fixture of a released depth: cut it below to an unreleased one
        enc_sd = {k: v for k, v in enc_sd.items() if not k.startswith(f"blocks.{fx['config']['depth'] - 1}.")}
    with pytest.raises(ValueError, match="pass the taps it was trained with"):
        infer_encoder_kwargs(enc_sd)


def test_wrong_configuration_names_what_the_file_holds(fx):
    cfg = fx["config"]
    v2_style = VisionTransformer(  # no 2.1 options
        img_size=cfg["img_size"],
        patch_size=cfg["patch_size"],
        num_frames=cfg["num_frames"],
        tubelet_size=cfg["tubelet_size"],
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
    )
    with pytest.raises(ValueError, match=f"V-JEPA 2.1 with {cfg['n_levels']} taps"):
        load_released_vjepa2(fx["checkpoint"], v2_style)
    one_level = predictor_from_reference(cfg, cfg["predictor_kwargs"], n_output_distillation=1)
    with pytest.raises(ValueError, match=f"{cfg['pred_levels']} level"):
        load_released_vjepa2(fx["checkpoint"], encoder_from_reference(cfg), one_level)


def test_v2_1_options_off_keep_the_v2_modules():
    """Options off = the V-JEPA 2 state dict, nothing more (so the V-JEPA 2 parity and checkpoints hold)."""
    enc = VisionTransformer(img_size=32, patch_size=8, num_frames=4, embed_dim=48, depth=2, num_heads=2)
    assert not any(k.startswith(("norms_block", "patch_embed_img", "img_mod", "video_mod")) for k in enc.state_dict())
    assert "norm.weight" in enc.state_dict()


# Released 2.1 files (vjepa2 `src/hub/backbones.py`, `app/vjepa_2_1/models/*`): width, depth, heads, MLP hidden,
# predictor config, its depth, levels, output width per level.
RELEASED = {
    "vjepa2_1_vit_base": (768, 12, 12, 3072, "vjepa2_1_distilled", 12, 1, 1664),
    "vjepa2_1_vit_large": (1024, 24, 16, 4096, "vjepa2_1_distilled", 12, 1, 1664),
    "vjepa2_1_vit_giant": (1408, 40, 22, 6144, "vjepa2_1", 24, 4, 1408),
    "vjepa2_1_vit_gigantic": (1664, 48, 26, 8192, "vjepa2_1", 24, 4, 1664),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_configs_have_the_released_shapes(name):
    """Each 2.1 encoder config + its predictor config builds the state dict of the released file, key for key, and
    the loader's inference from those weights gives back the configured options."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    D, depth, heads, hidden, pred_name, pred_depth, levels, out = RELEASED[name]
    configs = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose("train", overrides=[f"encoder={name}", f"predictor={pred_name}", "encoder.img_size=384"])
    with torch.device("meta"):
        enc = instantiate(cfg.encoder, _convert_="all")
        pred = instantiate(cfg.predictor, _convert_="all")
    sd = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert sd["patch_embed.proj.weight"] == (D, 3, 2, 16, 16) and sd["patch_embed_img.proj.weight"] == (
        D,
        3,
        1,
        16,
        16,
    )
    assert sd["img_mod_embed"] == sd["video_mod_embed"] == (1, 1, D)
    assert sd[f"blocks.{depth - 1}.mlp.fc1.weight"] == (hidden, D) and f"blocks.{depth}.norm1.weight" not in sd
    assert sd["norms_block.3.weight"] == (D,) and "norms_block.4.weight" not in sd and "norm.weight" not in sd
    assert enc.num_heads == heads and enc.taps[-1] == depth - 1
    psd = {k: tuple(v.shape) for k, v in pred.state_dict().items()}
    if levels == 1:
        assert psd["predictor_embed.weight"] == (384, D)
    else:
        assert psd["predictor_embed.0.weight"] == (D, levels * D) and psd["predictor_embed.2.weight"] == (384, D)
    assert (
        f"predictor_blocks.{pred_depth - 1}.attn.qkv.weight" in psd
        and f"predictor_blocks.{pred_depth}.norm1.weight" not in psd
    )
    assert psd["predictor_proj.weight"] == psd["predictor_proj_context.weight"] == (levels * out, 384)
    assert psd["mask_tokens.7"] == (1, 1, 384) and "mask_tokens.8" not in psd
    assert psd["img_mod_embed"] == (1, 1, 384)
    # what the loader reads from such a file is what the config says
    inferred = infer_encoder_kwargs(enc.state_dict())
    for key in (
        "embed_dim",
        "depth",
        "num_heads",
        "taps",
        "img_temporal_dim_size",
        "modality_embedding",
        "tiled_rope",
    ):
        assert inferred[key] == enc.init_kwargs[key], key
    assert inferred["mlp_ratio"] == pytest.approx(enc.init_kwargs["mlp_ratio"])
    inferred = infer_predictor_kwargs(pred.state_dict())
    for key in ("predictor_embed_dim", "depth", "num_heads", "num_mask_tokens", "num_levels", "return_all_tokens"):
        assert inferred[key] == pred.init_kwargs[key], key

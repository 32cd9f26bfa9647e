"""Load checkpoints into bare modules: the released V-JEPA 2 / 2.1 layouts and our own Lightning checkpoints.

Released V-JEPA 2 layout (`vitl.pt`, `vith.pt`, `vitg.pt`): `{"encoder", "target_encoder", "predictor", "epoch", ...}`,
every key prefixed `module.backbone.`. torch.hub loads `encoder`, the reference evals load `target_encoder`;
here the choice is explicit (`which=`), target (EMA) by default.

Released V-JEPA 2.1 layouts, same prefix: ViT-g/G (`vjepa2_1_vitg_384.pt`, `vjepa2_1_vitG_384.pt`) hold
`{"encoder", "target_encoder", "predictor", "epoch"}` with a 4-level predictor; the distilled ViT-B/L
(`vjepa2_1_vitb_dist_vitG_384.pt`, `vjepa2_1_vitl_dist_vitG_384.pt`) hold `{"ema_encoder", "encoder", "predictor"}`
with a one-level predictor whose heads give the ViT-G teacher's 1664 channels. `which="target"` takes
`target_encoder` or `ema_encoder`, whichever the file has (what the reference hub loads). A 2.1 encoder is
recognised by its `norms_block.*` keys; its options (taps, image tokenizer, modality vectors, interleaved and
interpolated RoPE) are set from the file (`infer_encoder_kwargs`, `infer_predictor_kwargs`).

Our Lightning checkpoints hold `state_dict` (`encoder.*`, `target_encoder.*`, `predictor.*`) plus the exact
constructor kwargs of each module (`module_kwargs`), so no config system is needed to rebuild them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepa.checkpoint_io import LoadedCheckpoint, check_finite, read_checkpoint
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VIT_SIZES, VJEPA2_1_TAPS, VisionTransformer

RELEASED_PREFIX = "module.backbone."
ENCODER_KEYS = {"target": "target_encoder", "context": "encoder"}
# released files: the EMA encoder is `target_encoder` (V-JEPA 2, 2.1 ViT-g/G) or `ema_encoder` (2.1 ViT-B/L)
RELEASED_ENCODER_KEYS = {"target": ("target_encoder", "ema_encoder"), "context": ("encoder",)}


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Removes the first matching prefix from every key (`module.backbone.`, `module.`, `_orig_mod.`)."""
    out = {}
    for key, value in state_dict.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        out[key] = value
    return out


def released_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vjepa2 key map: only the DDP/wrapper prefix differs from our module names."""
    return strip_prefix(state_dict, (RELEASED_PREFIX, "module.", "backbone.", "_orig_mod."))


def infer_encoder_kwargs(state_dict: Mapping[str, torch.Tensor], **overrides: Any) -> dict[str, Any]:
    """Guesses VisionTransformer kwargs from an encoder state dict (prefix already stripped).

    Width, depth, patch/tubelet size and MLP ratio are read from tensor shapes; the head count, which shapes
    do not fix, comes from the standard size of that (width, depth). A V-JEPA 2.1 encoder (`norms_block.*` keys)
    also gets its taps from its depth (the released ViT-B/L/g/G), the image tokenizer and modality vectors when
    present, and the 2.1 RoPE (interleaved, interpolated). `overrides` replace any guess (e.g. `taps=` for a
    non-standard depth).

    Raises:
        ValueError: a 2.1 encoder of a depth without released taps and no `taps` override.
    """
    conv = state_dict["patch_embed.proj.weight"]  # (D, C, tubelet, patch, patch)
    embed_dim, in_chans, tubelet, patch, _ = conv.shape
    depth = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks."))
    mlp_ratio = state_dict["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
    size = VIT_SIZES.get((embed_dim, depth))
    if size is None:
        # non-standard: the smallest head count giving a 64-wide head, as vjepa2's ViTs do
        num_heads = max(embed_dim // 64, 1)
    else:
        num_heads = size[1]
    kwargs: dict[str, Any] = dict(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        patch_size=patch,
        tubelet_size=tubelet,
        in_chans=in_chans,
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
    )
    num_taps = len({k.split(".")[1] for k in state_dict if k.startswith("norms_block.")})
    if num_taps:
        taps = overrides.get("taps", VJEPA2_1_TAPS.get(depth))
        if taps is None or len(taps) != num_taps:
            raise ValueError(
                f"the V-JEPA 2.1 encoder has {num_taps} tap norms (norms_block.*) and {depth} blocks, a depth with no "
                f"released taps ({sorted(VJEPA2_1_TAPS)}): pass the taps it was trained with, e.g. taps=[...], or "
                f"build the encoder yourself"
            )
        kwargs.update(
            taps=list(taps),
            img_temporal_dim_size=1 if "patch_embed_img.proj.weight" in state_dict else None,
            modality_embedding="img_mod_embed" in state_dict,
            tiled_rope=False,
            interpolate_rope=True,
        )
    kwargs.update(overrides)
    return kwargs


def infer_predictor_kwargs(
    state_dict: Mapping[str, torch.Tensor], head_dim: int = 32, **overrides: Any
) -> dict[str, Any]:
    """Guesses VisionTransformerPredictor kwargs from a (prefix-stripped) predictor state dict, V-JEPA 2 or 2.1.

    Widths, depth, mask tokens, levels (MLP vs Linear input fusion), output width, the context head and the
    modality vectors come from the weights. Heads do not: `head_dim` 32 gives the released predictors' 12 heads of
    384 channels. A 2.1 predictor (levels > 1, a context head or modality vectors) gets the 2.1 RoPE (interleaved,
    interpolated, as trained; the reference hub builds it without interpolation, pass `interpolate_rope=False`
    to get that). `overrides` replace any guess (geometry: `img_size`, `num_frames`, ...).
    """
    if "predictor_embed.weight" in state_dict:  # one level: Linear(D, P)
        predictor_embed_dim, embed_dim = state_dict["predictor_embed.weight"].shape
        num_levels = 1
    else:  # MLP fusion: Linear(L*D, D), GELU, Linear(D, P)
        embed_dim, fused = state_dict["predictor_embed.0.weight"].shape
        predictor_embed_dim = state_dict["predictor_embed.2.weight"].shape[0]
        num_levels = fused // embed_dim
    out_dim = state_dict["predictor_proj.weight"].shape[0]
    depth = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("predictor_blocks."))
    kwargs: dict[str, Any] = dict(
        embed_dim=embed_dim,
        predictor_embed_dim=predictor_embed_dim,
        depth=depth,
        num_heads=max(predictor_embed_dim // head_dim, 1),
        mlp_ratio=state_dict["predictor_blocks.0.mlp.fc1.weight"].shape[0] / predictor_embed_dim,
        num_mask_tokens=sum(1 for k in state_dict if k.startswith("mask_tokens.")),
    )
    is_2_1 = num_levels > 1 or "predictor_proj_context.weight" in state_dict or "img_mod_embed" in state_dict
    if is_2_1:
        kwargs.update(
            num_levels=num_levels,
            out_embed_dim=out_dim // num_levels,
            return_all_tokens="predictor_proj_context.weight" in state_dict,
            modality_embedding="img_mod_embed" in state_dict,
            tiled_rope=False,
            interpolate_rope=True,
        )
    kwargs.update(overrides)
    return kwargs


def describe_size(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Names the encoder size a state dict fits, e.g. 'vit_large (1024 wide, 24 deep, patch 16, tubelet 2)'."""
    kw = infer_encoder_kwargs({k: v for k, v in state_dict.items() if not k.startswith("norms_block.")})
    name = VIT_SIZES.get((kw["embed_dim"], kw["depth"]), ("a custom ViT",))[0]
    num_taps = len({k.split(".")[1] for k in state_dict if k.startswith("norms_block.")})
    extra = f", V-JEPA 2.1 with {num_taps} taps" if num_taps else ""
    return (
        f"{name} ({kw['embed_dim']} wide, {kw['depth']} deep, patch {kw['patch_size']}, tubelet "
        f"{kw['tubelet_size']}{extra})"
    )


def load_state_dict_strict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, source: str = "the checkpoint"
) -> None:
    """`load_state_dict(strict=True)` with one readable error listing mismatched, missing and unexpected keys.

    Weights with NaN or inf (a diverged run) are refused too (`jepa.checkpoint_io.check_finite`); ``source`` names
    the file in that message.
    """
    check_finite(state_dict, f"{source} ({what})")
    own = module.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if mismatched or missing or unexpected:
        lines = [f"the {what} checkpoint does not fit the configured {type(module).__name__}:"]
        lines += [f"  shape {m}" for m in mismatched[:8]]
        if missing:
            lines.append(f"  missing {len(missing)} keys, e.g. {missing[:4]}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)} keys, e.g. {unexpected[:4]}")
        if what.endswith("encoder") and "patch_embed.proj.weight" in state_dict:
            lines.append(f"  the checkpoint holds {describe_size(state_dict)}: configure that encoder size")
        if what == "predictor" and "predictor_proj.weight" in state_dict:
            kw = infer_predictor_kwargs(state_dict)
            lines.append(
                f"  the checkpoint holds a predictor {kw['predictor_embed_dim']} wide, {kw['depth']} deep, "
                f"{kw['num_mask_tokens']} mask tokens, {kw.get('num_levels', 1)} level(s) of "
                f"{kw.get('out_embed_dim', kw['embed_dim'])} channels: configure those (or use build_predictor=True)"
            )
        raise ValueError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)


def load_released_vjepa2(
    path_or_checkpoint: str | Path | Mapping[str, Any],
    encoder: VisionTransformer | None = None,
    predictor: VisionTransformerPredictor | None = None,
    which: str = "target",
    build_predictor: bool = False,
    img_size: int | None = None,
) -> dict[str, nn.Module]:
    """Loads a released V-JEPA 2 or 2.1 checkpoint (or a fixture's `checkpoint` dict) into our modules.

    Args:
        path_or_checkpoint: a `.pt` path or an already loaded dict.
        encoder: module to fill; None builds one whose size and options are inferred from the weights.
        predictor: module to fill, if wanted.
        which: "target" (the EMA encoder: `target_encoder`, or `ema_encoder` in the distilled 2.1 files; what the
            evals and the 2.1 hub use) or "context" (`encoder`, what the V-JEPA 2 hub uses).
        build_predictor: with `predictor=None`, build one from the weights (`infer_predictor_kwargs`: heads are
            not in the weights and are guessed as 32 wide).
        img_size: the built encoder's nominal input side (what a world model resizes frames to); None keeps the
            default (256, the released models').

    Returns:
        {"encoder": ..., "predictor": ...} (predictor only when given or built).
    """
    ckpt = _load(path_or_checkpoint)
    candidates = RELEASED_ENCODER_KEYS[which]
    key = next((k for k in candidates if k in ckpt), None)
    if key is None:  # e.g. a V-JEPA 2-AC file holds only `encoder`
        key = next((k for keys in RELEASED_ENCODER_KEYS.values() for k in keys if k in ckpt), None)
    if key is None:
        known = [k for keys in RELEASED_ENCODER_KEYS.values() for k in keys]
        raise KeyError(
            f"no encoder weights in {_source(path_or_checkpoint)}: expected one of {known}, found {sorted(ckpt)}"
        )
    enc_sd = released_state_dict(ckpt[key])
    pred_sd = released_state_dict(ckpt["predictor"]) if "predictor" in ckpt else None
    if encoder is None:
        overrides = {}
        if pred_sd is not None and "norms_block.0.weight" in enc_sd and "predictor_embed.weight" in pred_sd:
            overrides["num_output_levels"] = 1  # a distilled 2.1 file: its predictor takes the last level only
        if img_size is not None:
            overrides["img_size"] = img_size
        encoder = VisionTransformer(**infer_encoder_kwargs(enc_sd, **overrides))
    load_state_dict_strict(encoder, enc_sd, f"{key} encoder", _source(path_or_checkpoint))
    out: dict[str, nn.Module] = {"encoder": encoder}
    if predictor is None and build_predictor:
        if pred_sd is None:
            raise KeyError("build_predictor=True but the checkpoint has no 'predictor' weights")
        geometry = dict(patch_size=encoder.patch_size, tubelet_size=encoder.tubelet_size)
        predictor = VisionTransformerPredictor(**infer_predictor_kwargs(pred_sd, **geometry))
    if predictor is not None:
        if pred_sd is None:
            raise KeyError("a predictor was given but the checkpoint has no 'predictor' weights")
        load_state_dict_strict(predictor, pred_sd, "predictor", _source(path_or_checkpoint))
        out["predictor"] = predictor
    return out


def load_encoder(
    path: str | Path,
    which: str = "target",
    encoder: VisionTransformer | None = None,
    freeze: bool = True,
) -> VisionTransformer:
    """Loads a bare encoder from our Lightning checkpoint or a released V-JEPA 2 file.

    Args:
        path: `.ckpt` written by our training, or a released-layout `.pt`.
        which: "target" (EMA encoder, default) or "context".
        encoder: module to fill; None rebuilds the one that was trained (ours) or infers the size (released).
        freeze: eval mode and `requires_grad_(False)`, ready for frozen feature extraction.
    """
    ckpt = _load(path)
    if "state_dict" in ckpt:
        prefix = f"{ENCODER_KEYS[which]}."
        state = strip_prefix(ckpt["state_dict"], ("_orig_mod.",))
        enc_sd = strip_prefix({k: v for k, v in state.items() if k.startswith(prefix)}, (prefix, "_orig_mod."))
        if not enc_sd:
            raise KeyError(f"{path} has no '{prefix}*' weights; is it a V-JEPA pretraining checkpoint?")
        if encoder is None:
            kwargs = ckpt.get("module_kwargs", {}).get("encoder")
            encoder = VisionTransformer(**(kwargs or infer_encoder_kwargs(enc_sd)))
        load_state_dict_strict(encoder, enc_sd, f"{ENCODER_KEYS[which]} encoder", _source(ckpt))
    else:
        encoder = load_released_vjepa2(ckpt, encoder=encoder, which=which)["encoder"]
    if freeze:
        encoder.eval().requires_grad_(False)
    return encoder


def _load(path_or_checkpoint: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    """A loaded checkpoint dict as given, or the file read by `read_checkpoint` (clear errors for bad files)."""
    if isinstance(path_or_checkpoint, Mapping):
        return path_or_checkpoint
    return read_checkpoint(path_or_checkpoint)


def _source(path_or_checkpoint: str | Path | Mapping[str, Any]) -> str:
    """How error messages name a checkpoint: its path (also of a dict read from a file), or "the checkpoint dict"."""
    if isinstance(path_or_checkpoint, LoadedCheckpoint):
        return path_or_checkpoint.path
    return "the checkpoint dict" if isinstance(path_or_checkpoint, Mapping) else str(path_or_checkpoint)


# --- V-JEPA 2-AC (action-conditioned) layout ---------------------------------------------------------------------


def infer_ac_predictor_kwargs(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Reads AC predictor widths, depth and action/state dims from a (prefix-stripped) state dict.

    The head count is not in the weights; it is left to the caller (the released ViT-g AC predictor uses 16).
    """
    predictor_embed_dim, embed_dim = state_dict["predictor_embed.weight"].shape
    depth = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("predictor_blocks."))
    return dict(
        embed_dim=embed_dim,
        predictor_embed_dim=predictor_embed_dim,
        depth=depth,
        mlp_ratio=state_dict["predictor_blocks.0.mlp.fc1.weight"].shape[0] / predictor_embed_dim,
        action_dim=state_dict["action_encoder.weight"].shape[1],
        state_dim=state_dict["state_encoder.weight"].shape[1],
    )


def check_ac_dims(predictor: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raises one clear error when the checkpoint's action/state widths differ from the configured predictor's."""
    for name, configured in (("action", predictor.action_dim), ("state", predictor.state_dim)):
        in_ckpt = state_dict[f"{name}_encoder.weight"].shape[1]
        if in_ckpt != configured:
            raise ValueError(
                f"the AC predictor checkpoint takes {in_ckpt}-D {name}s but the predictor is configured with "
                f"{name}_dim={configured}: set {name}_dim={in_ckpt} to load it, or train a new predictor for "
                f"{configured}-D {name}s"
            )


def load_released_ac(
    path_or_checkpoint: str | Path | Mapping[str, Any],
    predictor: nn.Module | None = None,
    encoder: VisionTransformer | None = None,
    num_heads: int = 16,
    img_size: int = 256,
) -> dict[str, nn.Module]:
    """Loads a released V-JEPA 2-AC checkpoint (`vjepa2-ac-vitg.pt`, or the fixture's `ac_checkpoint`).

    Layout: `{"encoder", "predictor", "epoch"}`, keys prefixed `module.backbone.`. The released predictor also holds
    an `extrinsics_encoder` that is unused unless extrinsics are on; it is dropped when the predictor has none.

    Args:
        path_or_checkpoint: a `.pt` path or an already loaded dict.
        predictor: `VisionTransformerPredictorAC` to fill; None builds one from the weights' shapes and `num_heads`.
        encoder: module to fill; None infers the size from the weights.
        num_heads: predictor heads when `predictor` is None.
        img_size: frame side of the encoder and predictor built here (the released model: 256; its grid is 16 x 16).

    Returns:
        {"encoder": ..., "predictor": ...}.

    Raises:
        ValueError: the predictor's action or state width differs from the checkpoint's (named in the message).
    """
    from jepa.models.ac_predictor import VisionTransformerPredictorAC

    ckpt = _load(path_or_checkpoint)
    if "predictor" not in ckpt or "action_encoder.weight" not in released_state_dict(ckpt["predictor"]):
        raise KeyError("not a V-JEPA 2-AC checkpoint: expected a 'predictor' with an 'action_encoder'")
    encoder = load_released_vjepa2(ckpt, encoder=encoder, which="context", img_size=img_size)["encoder"]
    pred_sd = released_state_dict(ckpt["predictor"])
    if predictor is None:
        kwargs = infer_ac_predictor_kwargs(pred_sd)
        patch, tubelet = encoder.patch_size, encoder.tubelet_size
        predictor = VisionTransformerPredictorAC(
            **kwargs, num_heads=num_heads, img_size=img_size, patch_size=patch, tubelet_size=tubelet
        )
    check_ac_dims(predictor, pred_sd)
    if not getattr(predictor, "use_extrinsics", False):
        pred_sd = {k: v for k, v in pred_sd.items() if not k.startswith("extrinsics_encoder.")}
    load_state_dict_strict(predictor, pred_sd, "AC predictor", _source(path_or_checkpoint))
    return {"encoder": encoder, "predictor": predictor}


def load_world_model(
    path_or_checkpoint: str | Path | Mapping[str, Any], integrate_states: bool = True, **released_kwargs: Any
) -> nn.Module:
    """A planning world model (frozen, eval) from a checkpoint: a `JEPAWorldModel` from our jointly trained
    `.ckpt` (`+experiment=tworooms_wm`), or an `ACWorldModel` from our AC training `.ckpt` or a released V-JEPA 2-AC
    `.pt`.

    Args:
        path_or_checkpoint: our `.ckpt` (holds `module_kwargs` with `world_model`, or `encoder` and `ac_predictor`)
            or a released file.
        integrate_states: rollouts advance states by the actions (ours: as trained, from the checkpoint).
        **released_kwargs: `load_released_ac` arguments (`num_heads`, `img_size`) for released files.
    """
    from jepa.models.ac_predictor import ACWorldModel, VisionTransformerPredictorAC

    ckpt = _load(path_or_checkpoint)
    residual = False
    if "state_dict" in ckpt and "encoder" in ckpt.get("module_kwargs", {}).get("world_model", {}):
        return _load_jepa_world_model(ckpt)
    if "state_dict" in ckpt:
        kwargs = ckpt.get("module_kwargs", {})
        integrate_states = kwargs.get("world_model", {}).get("integrate_states", integrate_states)
        residual = kwargs.get("world_model", {}).get("residual", False)
        if "ac_predictor" not in kwargs:
            raise KeyError(f"{path_or_checkpoint} is not an AC training checkpoint (no ac_predictor kwargs)")
        state = strip_prefix(ckpt["state_dict"], ("_orig_mod.",))
        encoder = VisionTransformer(**kwargs["encoder"])
        predictor = VisionTransformerPredictorAC(**kwargs["ac_predictor"])
        for module, prefix in ((encoder, "encoder."), (predictor, "predictor.")):
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            load_state_dict_strict(module, sub, prefix[:-1], _source(path_or_checkpoint))
    else:
        modules = load_released_ac(ckpt, **released_kwargs)
        encoder, predictor = modules["encoder"], modules["predictor"]
    return ACWorldModel(encoder, predictor, integrate_states, residual).eval().requires_grad_(False)


def _load_jepa_world_model(ckpt: Mapping[str, Any]) -> nn.Module:
    """A jointly trained `JEPAWorldModel` (frozen, eval) from our `.ckpt` (its spec in `module_kwargs`)."""
    from jepa.models.world_model import JEPAWorldModel

    world_model = JEPAWorldModel.from_spec(ckpt["module_kwargs"]["world_model"])
    state = strip_prefix(ckpt["state_dict"], ("_orig_mod.",))
    prefix = "world_model."
    load_state_dict_strict(
        world_model, {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, "world model"
    )
    return world_model.eval().requires_grad_(False)


def load_energy_head(path_or_checkpoint: str | Path | Mapping[str, Any]) -> nn.Module:
    """The `LatentEnergyHead` (frozen, eval) saved by `launch/train_energy_head.py` (`energy_head.ckpt`)."""
    from jepa.models.energy_head import LatentEnergyHead

    ckpt = _load(path_or_checkpoint)
    kwargs = ckpt.get("module_kwargs", {}).get("energy_head") if "state_dict" in ckpt else None
    if kwargs is None:
        raise KeyError(
            f"{path_or_checkpoint} is not an energy-head checkpoint (no energy_head kwargs): train one with "
            "`python launch/train_energy_head.py checkpoint=AC_CKPT`"
        )
    head = LatentEnergyHead(**kwargs)
    state = strip_prefix(ckpt["state_dict"], ("_orig_mod.",))
    head_sd = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
    load_state_dict_strict(head, head_sd, "head", _source(path_or_checkpoint))
    return head.eval().requires_grad_(False)

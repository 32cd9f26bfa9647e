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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


# --- V-JEPA 2-AC (action-conditioned) layout ------------------------------------------------------------------------


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


# --- the one loader: a checkpoint as named modules ------------------------------------------------------------------


@dataclass(frozen=True)
class StoredModule:
    """One module a checkpoint holds: its weights (keys relative to the module) and how to build it empty.

    build: constructs the module with fresh weights, from the constructor arguments the file records (ours) or those
        its weights imply (released files).
    what: how error messages name it (e.g. "target_encoder encoder").
    """

    state_dict: dict[str, torch.Tensor]
    build: Callable[[], nn.Module]
    what: str


def read_modules(
    path_or_checkpoint: str | Path | Mapping[str, Any], img_size: int | None = None, ac_num_heads: int = 16
) -> dict[str, StoredModule]:
    """Every module a checkpoint holds, by name, nothing built yet.

    Names, whatever the layout: `encoder` (the context encoder; the frozen one of AC and probe runs), `target_encoder`
    (the EMA encoder: ours, or the released `target_encoder` / `ema_encoder`), `predictor` (a V-JEPA 2 / 2.1
    predictor, or the V-JEPA 2-AC one), `world_model` (a jointly trained `JEPAWorldModel`), `inverse_dynamics`,
    `energy_head`. Our Lightning checkpoints record each module's constructor arguments (`module_kwargs`);
    released files are read by their weights' shapes (`infer_encoder_kwargs`, `infer_predictor_kwargs`,
    `infer_ac_predictor_kwargs`).

    Args:
        path_or_checkpoint: our `.ckpt`, a released `.pt`, the energy head's `energy_head.ckpt`, or a loaded dict.
        img_size: released files: the nominal frame side of the modules built (None: the released 256).
        ac_num_heads: released V-JEPA 2-AC files: the predictor's heads, which the weights do not fix.
    """
    ckpt = _load(path_or_checkpoint)
    source = _source(path_or_checkpoint)
    if "state_dict" in ckpt:
        return _read_ours(ckpt)
    return _read_released(ckpt, source, img_size, ac_num_heads)


def load_modules(
    path_or_checkpoint: str | Path | Mapping[str, Any],
    names: Sequence[str] | None = None,
    into: Mapping[str, nn.Module | None] | None = None,
    freeze: bool = True,
    **read_kwargs: Any,
) -> dict[str, nn.Module]:
    """The project's checkpoint loader: path -> named modules, built and loaded strictly (`read_modules` names them).

    Args:
        names: the modules wanted (default: all the file holds); a name the file lacks is an error naming what it holds.
        into: modules to fill instead of building them (e.g. a configured encoder), by name.
        freeze: eval mode and `requires_grad_(False)`, ready for frozen use.
        **read_kwargs: `read_modules` options for released files (`img_size`, `ac_num_heads`).
    """
    stored = read_modules(path_or_checkpoint, **read_kwargs)
    return _build(stored, names or list(stored), into or {}, freeze, _source(path_or_checkpoint))


def _build(
    stored: Mapping[str, StoredModule],
    names: Sequence[str],
    into: Mapping[str, nn.Module | None],
    freeze: bool,
    source: str,
) -> dict[str, nn.Module]:
    """Builds (or takes from `into`) and strictly loads each named module; `source` names the file in errors."""
    missing = [name for name in names if name not in stored]
    if missing:
        raise KeyError(f"{source} holds no {' or '.join(missing)}: it holds {sorted(stored) or 'no modules'}")
    out = {}
    for name in names:
        module = into.get(name)
        module = stored[name].build() if module is None else module
        load_state_dict_strict(module, stored[name].state_dict, stored[name].what, source)
        out[name] = module.eval().requires_grad_(False) if freeze else module
    return out


def _read_ours(ckpt: Mapping[str, Any]) -> dict[str, StoredModule]:
    """Our Lightning checkpoints (and `energy_head.ckpt`): `module_kwargs` names each module's constructor
    arguments, `state_dict` holds its weights under a prefix. Recorded kwargs without weights (the energy head
    names the encoder it was trained on) build nothing."""
    from jepa.models.ac_predictor import VisionTransformerPredictorAC
    from jepa.models.energy_head import LatentEnergyHead
    from jepa.models.world_model import InverseDynamics, JEPAWorldModel

    # module_kwargs entry -> (constructor, {module name: (state-dict prefix, how errors name it)})
    layout: dict[str, tuple[Callable[[Any], nn.Module], dict[str, tuple[str, str]]]] = {
        "encoder": (
            lambda kw: VisionTransformer(**kw),
            {
                "encoder": ("encoder.", "encoder encoder"),
                "target_encoder": ("target_encoder.", "target_encoder encoder"),
            },
        ),
        "predictor": (lambda kw: VisionTransformerPredictor(**kw), {"predictor": ("predictor.", "predictor")}),
        "ac_predictor": (lambda kw: VisionTransformerPredictorAC(**kw), {"predictor": ("predictor.", "AC predictor")}),
        "world_model": (JEPAWorldModel.from_spec, {"world_model": ("world_model.", "world model")}),
        "inverse_dynamics": (
            lambda kw: InverseDynamics(**kw),
            {"inverse_dynamics": ("inverse_dynamics.", "inverse dynamics")},
        ),
        "energy_head": (lambda kw: LatentEnergyHead(**kw), {"energy_head": ("head.", "energy head")}),
    }
    state = strip_prefix(ckpt["state_dict"], ("_orig_mod.",))
    stored = {}
    for entry, kwargs in ckpt.get("module_kwargs", {}).items():
        if entry not in layout or (entry == "world_model" and "encoder" not in kwargs):
            continue  # a probe head, or the AC run's world-model options (`load_world_model` reads those)
        constructor, modules = layout[entry]
        for name, (prefix, what) in modules.items():
            weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if weights:
                stored[name] = StoredModule(
                    strip_prefix(weights, ("_orig_mod.",)), lambda c=constructor, kw=kwargs: c(kw), what
                )
    return stored


def _read_released(
    ckpt: Mapping[str, Any], source: str, img_size: int | None, ac_num_heads: int
) -> dict[str, StoredModule]:
    """Released V-JEPA 2 / 2.1 / 2-AC files: encoders under `encoder` and `target_encoder` (or `ema_encoder`), a
    predictor under `predictor` (a V-JEPA 2-AC one when it has an `action_encoder`); sizes read from the weights."""
    from jepa.models.ac_predictor import VisionTransformerPredictorAC

    encoders = {}
    for name, keys in (("encoder", ("encoder",)), ("target_encoder", RELEASED_ENCODER_KEYS["target"])):
        key = next((k for k in keys if k in ckpt), None)
        if key is not None:
            encoders[name] = (key, released_state_dict(ckpt[key]))
    if not encoders:
        known = [k for keys in RELEASED_ENCODER_KEYS.values() for k in keys]
        raise KeyError(f"no encoder weights in {source}: expected one of {known}, found {sorted(ckpt)}")
    pred_sd = released_state_dict(ckpt["predictor"]) if "predictor" in ckpt else None
    is_ac = pred_sd is not None and "action_encoder.weight" in pred_sd
    any_encoder = next(iter(encoders.values()))[1]
    overrides: dict[str, Any] = {}
    if pred_sd is not None and "norms_block.0.weight" in any_encoder and "predictor_embed.weight" in pred_sd:
        overrides["num_output_levels"] = 1  # a distilled 2.1 file: its predictor takes the last level only
    if img_size is not None or is_ac:
        overrides["img_size"] = img_size or 256
    stored = {
        name: StoredModule(
            sd, lambda sd=sd: VisionTransformer(**infer_encoder_kwargs(sd, **overrides)), f"{key} encoder"
        )
        for name, (key, sd) in encoders.items()
    }
    if pred_sd is None:
        return stored
    _, _, tubelet, patch, _ = any_encoder["patch_embed.proj.weight"].shape  # (D, C, tubelet, patch, patch)
    geometry = dict(patch_size=patch, tubelet_size=tubelet)
    if is_ac:
        ac_kwargs = dict(infer_ac_predictor_kwargs(pred_sd), num_heads=ac_num_heads, img_size=img_size or 256)
        # the released AC predictor holds an `extrinsics_encoder`, unused (and not built) unless extrinsics are on
        ac_sd = {k: v for k, v in pred_sd.items() if not k.startswith("extrinsics_encoder.")}
        stored["predictor"] = StoredModule(
            ac_sd, lambda: VisionTransformerPredictorAC(**ac_kwargs, **geometry), "AC predictor"
        )
    else:
        stored["predictor"] = StoredModule(
            pred_sd, lambda: VisionTransformerPredictor(**infer_predictor_kwargs(pred_sd, **geometry)), "predictor"
        )
    return stored


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


# --- views: the loaders each workflow calls -------------------------------------------------------------------------


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
            evals and the 2.1 hub use) or "context" (`encoder`, what the V-JEPA 2 hub uses). A file with one
            encoder (V-JEPA 2-AC) gives that one.
        build_predictor: with `predictor=None`, build one from the weights (`infer_predictor_kwargs`: heads are
            not in the weights and are guessed as 32 wide).
        img_size: the built encoder's nominal input side (what a world model resizes frames to); None keeps the
            default (256, the released models').

    Returns:
        {"encoder": ..., "predictor": ...} (predictor only when given or built).
    """
    ckpt = _load(path_or_checkpoint)
    source = _source(path_or_checkpoint)
    stored = read_modules(ckpt, img_size=img_size)
    name = (
        ENCODER_KEYS[which] if ENCODER_KEYS[which] in stored else next(n for n in ENCODER_KEYS.values() if n in stored)
    )
    wanted = {name: encoder}
    if predictor is not None or build_predictor:
        if "predictor" not in stored:
            raise KeyError(f"a predictor was asked for but {source} has no 'predictor' weights")
        wanted["predictor"] = predictor
    modules = _build(stored, list(wanted), wanted, False, source)
    return {"encoder": modules[name], **({"predictor": modules["predictor"]} if "predictor" in wanted else {})}


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
    ckpt = _load(path_or_checkpoint)
    source = _source(path_or_checkpoint)
    if "predictor" not in ckpt or "action_encoder.weight" not in released_state_dict(ckpt["predictor"]):
        raise KeyError("not a V-JEPA 2-AC checkpoint: expected a 'predictor' with an 'action_encoder'")
    stored = dict(read_modules(ckpt, img_size=img_size, ac_num_heads=num_heads))
    if predictor is not None:
        check_ac_dims(predictor, stored["predictor"].state_dict)
        if getattr(predictor, "use_extrinsics", False):
            full = released_state_dict(ckpt["predictor"])
            stored["predictor"] = StoredModule(full, stored["predictor"].build, "AC predictor")
    into = {"encoder": encoder, "predictor": predictor}
    return _build(stored, ["encoder", "predictor"], into, False, source)


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
    if "state_dict" not in ckpt:
        encoder = load_released_vjepa2(ckpt, encoder=encoder, which=which)["encoder"]
        return encoder.eval().requires_grad_(False) if freeze else encoder
    name = ENCODER_KEYS[which]
    stored = read_modules(ckpt)
    if name not in stored:
        raise KeyError(f"{path} has no '{name}.*' weights; is it a V-JEPA pretraining checkpoint?")
    return _build(stored, [name], {name: encoder}, freeze, _source(ckpt))[name]


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
    from jepa.models.ac_predictor import ACWorldModel

    ckpt = _load(path_or_checkpoint)
    if "state_dict" not in ckpt:
        modules = load_released_ac(ckpt, **released_kwargs)
        return ACWorldModel(modules["encoder"], modules["predictor"], integrate_states).eval().requires_grad_(False)
    stored = read_modules(ckpt)
    if "world_model" in stored:
        return _build(stored, ["world_model"], {}, True, _source(ckpt))["world_model"]
    recorded = ckpt.get("module_kwargs", {})
    if "ac_predictor" not in recorded:
        raise KeyError(f"{path_or_checkpoint} is not a world-model checkpoint (no world_model or ac_predictor kwargs)")
    options = recorded.get("world_model", {})
    modules = _build(stored, ["encoder", "predictor"], {}, False, _source(ckpt))
    world_model = ACWorldModel(
        modules["encoder"],
        modules["predictor"],
        options.get("integrate_states", integrate_states),
        options.get("residual", False),
    )
    return world_model.eval().requires_grad_(False)


def load_energy_head(path_or_checkpoint: str | Path | Mapping[str, Any]) -> nn.Module:
    """The `LatentEnergyHead` (frozen, eval) saved by `launch/train_energy_head.py` (`energy_head.ckpt`)."""
    ckpt = _load(path_or_checkpoint)
    stored = read_modules(ckpt) if "state_dict" in ckpt else {}
    if "energy_head" not in stored:
        raise KeyError(
            f"{path_or_checkpoint} is not an energy-head checkpoint (no energy_head kwargs): train one with "
            "`python launch/train_energy_head.py checkpoint=AC_CKPT`"
        )
    return _build(stored, ["energy_head"], {}, True, _source(ckpt))["energy_head"]

"""Write a V-JEPA 2 parity fixture of other dimensions than the public one, with the reference code itself.

    git clone https://github.com/facebookresearch/vjepa2 /tmp/vjepa2        # a temporary copy, never committed
    python tests/make_vjepa2_fixture.py /tmp/vjepa2 /tmp/shared2/fixtures/vjepa2_official_public.pt
    cp shared/fixtures/vjepa2_1_official_public.pt /tmp/shared2/fixtures/  # the 2.1 tests read the folder too
    JEPA_SHARED_DIR=/tmp/shared2 python -m pytest -q tests/test_checkpoints.py tests/test_ac_predictor.py \
        tests/test_probe.py

Same layout as ``shared/fixtures/vjepa2_official_public.pt`` (README there): ``config``, ``checkpoint``,
``ac_checkpoint``, ``inputs``, ``outputs``. Dimensions: encoder 128 wide, 3 deep, 2 heads of 64 (RoPE rotates 60 of
each head's 64 channels, 4 unrotated), patch 8, tubelet 2, 6 frames at 48x48 (3x6x6 = 108 tokens); predictor 64
wide, 3 deep, 2 heads, 4 mask tokens; AC predictor 64 wide, 2 deep, 2 heads, 5-D actions and states. Every weight
(norms, biases, mask tokens too) is moved away from its initial value, so a loader that skips a tensor fails.
Not part of the suite: it needs the reference code on disk.
"""

from __future__ import annotations

import sys
from functools import partial

import torch
from torch import nn

CONFIG = dict(
    embed_dim=128, depth=3, heads=2, img=48, frames=6, pred_dim=64, pred_depth=3, pred_heads=2, ac_dim=64, ac_depth=2,
    ac_heads=2, batch=2, seed=1, patch_size=8, tubelet_size=2, use_rope=True, num_mask_tokens=4, layer_norm_eps=1e-6,
    ac_action_dim=5, ac_frame_causal=True,
)  # fmt: skip
PREFIX = "module.backbone."


def released(module: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict in the released files' layout (every key under ``module.backbone.``)."""
    return {PREFIX + k: v.clone() for k, v in module.state_dict().items()}


def main(reference: str, out: str) -> None:
    sys.path.insert(0, reference)
    from src.models.ac_predictor import VisionTransformerPredictorAC
    from src.models.predictor import VisionTransformerPredictor
    from src.models.vision_transformer import VisionTransformer

    cfg = CONFIG
    torch.manual_seed(cfg["seed"])
    norm = partial(nn.LayerNorm, eps=cfg["layer_norm_eps"])
    geometry = dict(img_size=cfg["img"], patch_size=cfg["patch_size"], num_frames=cfg["frames"],
                    tubelet_size=cfg["tubelet_size"], norm_layer=norm, use_rope=True)  # fmt: skip
    width = dict(embed_dim=cfg["embed_dim"], depth=cfg["depth"], num_heads=cfg["heads"])
    encoder, ac_encoder = VisionTransformer(**geometry, **width), VisionTransformer(**geometry, **width)
    predictor = VisionTransformerPredictor(
        **geometry, embed_dim=cfg["embed_dim"], predictor_embed_dim=cfg["pred_dim"], depth=cfg["pred_depth"],
        num_heads=cfg["pred_heads"], use_mask_tokens=True, num_mask_tokens=cfg["num_mask_tokens"],
    )  # fmt: skip
    ac_predictor = VisionTransformerPredictorAC(
        **geometry, embed_dim=cfg["embed_dim"], predictor_embed_dim=cfg["ac_dim"], depth=cfg["ac_depth"],
        num_heads=cfg["ac_heads"], action_embed_dim=cfg["ac_action_dim"], is_frame_causal=True,
    )  # fmt: skip
    modules = (encoder, predictor, ac_encoder, ac_predictor)
    with torch.no_grad():
        for module in modules:
            module.eval()
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))

    B, T = cfg["batch"], cfg["frames"] // cfg["tubelet_size"]
    N = T * (cfg["img"] // cfg["patch_size"]) ** 2
    video = torch.randn(B, 3, cfg["frames"], cfg["img"], cfg["img"])
    order = torch.stack([torch.randperm(N) for _ in range(B)])
    target_idx, context_idx = order[:, :40].sort(dim=1).values, order[:, 40:90].sort(dim=1).values
    mask_index = 3
    actions, states = torch.randn(B, T, cfg["ac_action_dim"]), torch.randn(B, T, cfg["ac_action_dim"])
    with torch.no_grad():
        outputs = {"encoder": encoder(video), "encoder_context": encoder(video, masks=[context_idx])}
        outputs["predictor"] = predictor(outputs["encoder_context"], [context_idx], [target_idx], mask_index)
        outputs["ac_predictor"] = ac_predictor(ac_encoder(video), actions, states)
    fixture = {
        "config": cfg,
        "checkpoint": {
            "encoder": released(encoder),
            "target_encoder": released(encoder),
            "predictor": released(predictor),
            "epoch": 0,
        },  # fmt: skip
        "ac_checkpoint": {"encoder": released(ac_encoder), "predictor": released(ac_predictor), "epoch": 0},
        "inputs": {
            "video": video,
            "context_idx": context_idx,
            "target_idx": target_idx,
            "mask_index": mask_index,
            "actions": actions,
            "states": states,
        },  # fmt: skip
        "outputs": outputs,
    }
    torch.save(fixture, out)
    print(out, {k: tuple(v.shape) for k, v in outputs.items()})


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Our trainer's step against the reference implementation's (facebookresearch/vjepa2), interleaved in one process.

    python benchmarks/train_step_reference.py --reference /tmp/vjepa2 --steps 5            # ours at the preset's precision
    python benchmarks/train_step_reference.py --reference /tmp/vjepa2 trainer.precision=32-true

`--reference` is a checkout of github.com/facebookresearch/vjepa2 (it needs `einops` and `timm`); it is imported from
there, never copied. Its side is its own modules and step as `app/vjepa/train.py` runs them: `init_video_model`
(RoPE, SDPA, uniform power, mask tokens), its `MaskCollator`'s mask generators with the V-JEPA 2 families, `init_opt`'s
AdamW and schedulers, the target / context / predictor passes with `apply_masks` and the L1 loss, and the `_foreach`
EMA, in fp32 (its CPU path: `torch.cuda.amp.autocast` does nothing there). Our side is `benchmarks/train_step.py`'s:
`launch/train.py`'s config (default `+experiment=vjepa2_small encoder.img_size=224 data.batch_size=2 trainer=cpu`,
Hydra overrides appended) and `Trainer.fit`'s own steps. The geometry of the reference model follows our config.

The steps alternate (ours, the reference's, ours, ...), so machine load hits both alike; the first `--warmup` of
each are dropped and medians compared. Prints one JSON line with both sides' step times, FLOPs and the speed-up.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import torch
import torch.nn.functional as F

from benchmarks import train_step
from benchmarks.external import importable_checkout
from jepa.hardware import cpu_bf16_native

DEFAULT = ["+experiment=vjepa2_small", "encoder.img_size=224", "data.batch_size=2", "trainer=cpu"]


class ReferenceStep:
    """The reference's V-JEPA 2 pretraining step, built from its checkout at the geometry of our `cfg`."""

    def __init__(self, path: str, cfg, steps: int) -> None:
        importable_checkout(path)
        from app.vjepa.utils import init_opt, init_video_model
        from src.masks.multiseq_multiblock3d import MaskCollator
        from src.masks.utils import apply_masks

        self.apply_masks = apply_masks
        enc, pred = cfg.encoder, cfg.predictor
        torch.manual_seed(cfg.seed)
        self.encoder, self.predictor = init_video_model(
            device=torch.device("cpu"),
            patch_size=enc.patch_size,
            max_num_frames=enc.num_frames,
            tubelet_size=enc.tubelet_size,
            model_name=train_step.encoder_name(cfg),
            crop_size=enc.img_size,
            pred_depth=pred.depth,
            pred_num_heads=pred.num_heads,
            pred_embed_dim=pred.predictor_embed_dim,
            uniform_power=True,
            use_mask_tokens=True,
            num_mask_tokens=len(cfg.mask.specs),
            zero_init_mask_tokens=True,
            use_sdpa=True,
            use_rope=True,
        )
        self.target_encoder = _frozen_copy(self.encoder)
        self.optimizer, _, self.scheduler, self.wd_scheduler = init_opt(
            is_anneal=False,
            encoder=self.encoder,
            predictor=self.predictor,
            iterations_per_epoch=300,
            start_lr=1e-4,
            ref_lr=5.25e-4,
            warmup=40,
            num_epochs=10,
            wd=0.04,
            final_wd=0.04,
            final_lr=5.25e-4,
            mixed_precision=False,
        )
        families = [
            {
                "num_blocks": s.num_blocks,
                "spatial_scale": list(s.spatial_scale),
                "temporal_scale": list(s.temporal_scale),
                "aspect_ratio": list(s.aspect_ratio),
            }
            for s in cfg.mask.specs
        ]
        collator = MaskCollator(
            cfgs_mask=families,
            dataset_fpcs=[enc.num_frames],
            crop_size=enc.img_size,
            patch_size=enc.patch_size,
            tubelet_size=enc.tubelet_size,
        )
        batch = cfg.data.batch_size
        self.video = torch.randn(
            batch, 3, enc.num_frames, enc.img_size, enc.img_size, generator=torch.Generator().manual_seed(0)
        )
        # per step: (context masks, target masks), one per family, drawn by the reference's own generators
        self.masks = []
        for _ in range(steps):
            drawn = [generator(batch) for generator in collator.mask_generators[enc.num_frames]]
            self.masks.append(([e for e, _ in drawn], [p for _, p in drawn]))
        self.times: list[float] = []

    def step(self, i: int) -> None:
        start = time.perf_counter()
        self.scheduler.step()
        self.wd_scheduler.step()
        masks_enc, masks_pred = ([m] for m in self.masks[i])
        clips = [self.video]
        with torch.no_grad():
            h = [F.layer_norm(hi, (hi.size(-1),)) for hi in self.target_encoder(clips)]
        z = self.predictor(self.encoder(clips, masks_enc), masks_enc, masks_pred)
        targets = [self.apply_masks(hi, mi, concat=False) for hi, mi in zip(h, masks_pred, strict=True)]
        pairs = [(zij, hij) for zi, hi in zip(z, targets, strict=True) for zij, hij in zip(zi, hi, strict=True)]
        loss = sum(torch.mean(torch.abs(zij - hij)) for zij, hij in pairs) / len(pairs)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        with torch.no_grad():
            online, target = list(self.encoder.parameters()), list(self.target_encoder.parameters())
            torch._foreach_mul_(target, 0.99925)
            torch._foreach_add_(target, online, alpha=1 - 0.99925)
        float(loss)
        self.times.append(time.perf_counter() - start)

    def step_flops(self, i: int, num_tokens: int) -> float:
        backbone = self.encoder.backbone
        masks = [(e.size(1), p.size(1)) for e, p in zip(*self.masks[i], strict=True)]

        class Shape:  # the sizes `analytic_step_flops` reads, from the reference's modules
            embed_dim, blocks, patch_embed = backbone.embed_dim, backbone.blocks, backbone.patch_embed

        predictor = self.predictor.backbone
        return train_step.analytic_step_flops(Shape, predictor, num_tokens, masks, self.video.size(0))


def _frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad = False
    return target


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Other arguments: Hydra overrides.")
    parser.add_argument("--reference", required=True, help="path of a facebookresearch/vjepa2 checkout")
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each side first")
    args, overrides = parser.parse_known_args(argv)
    cfg = train_step.compose_config([*DEFAULT, *overrides])
    if str(cfg.trainer.accelerator) != "cpu":
        raise SystemExit("the reference side runs on the CPU: add trainer=cpu")
    total = args.warmup + args.steps
    reference = ReferenceStep(args.reference, cfg, total)
    ours = train_step.Bench(cfg, total)
    load_before = os.getloadavg()
    our_times = ours.fit(ours.batches, after_step=reference.step)[args.warmup :]
    load_after = os.getloadavg()
    ref_times = reference.times[args.warmup :]

    enc = cfg.encoder
    num_tokens = (enc.num_frames // enc.tubelet_size) * (enc.img_size // enc.patch_size) ** 2
    our_flops = [
        train_step.analytic_step_flops(
            ours.task.encoder, ours.task.predictor, num_tokens, train_step.step_masks(b), cfg.data.batch_size
        )
        for b in ours.batches[args.warmup :]
    ]
    ref_flops = [reference.step_flops(i, num_tokens) for i in range(args.warmup, total)]
    ours_s, ref_s = median(our_times), median(ref_times)
    print(
        json.dumps(
            {
                **train_step.describe(cfg),
                "reference_precision": "fp32",
                "ours_step_s": round(ours_s, 3),
                "reference_step_s": round(ref_s, 3),
                "speedup": round(ref_s / ours_s, 3),
                "ours_step_times_s": [round(t, 3) for t in our_times],
                "reference_step_times_s": [round(t, 3) for t in ref_times],
                "ours_tflop_per_step": round(sum(our_flops) / len(our_flops) / 1e12, 4),
                "reference_tflop_per_step": round(sum(ref_flops) / len(ref_flops) / 1e12, 4),
                # speed-up at equal work: FLOP/s ratio (the two mask samplers keep slightly different token counts)
                "speedup_flop_rate": round((sum(our_flops) / ours_s) / (sum(ref_flops) / ref_s), 3),
                "load_avg_before": [round(x, 2) for x in load_before],
                "load_avg_after": [round(x, 2) for x in load_after],
                "threads": torch.get_num_threads(),
                "cpu_bf16_native": cpu_bf16_native(),
                "torch": torch.__version__,
                "commit": train_step.git_commit(),
                "overrides": [*DEFAULT, *overrides],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

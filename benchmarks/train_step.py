"""Times the full V-JEPA 2 pretraining step and reports throughput, FLOPs, MFU and memory.

One step = target-encoder forward (shared by all masks) + per mask family: context-encoder forward, predictor
forward, L1 loss; backward; AdamW step; EMA update — `PretrainTask.loss_and_metrics` plus the optimizer and EMA
exactly as training runs them. MFU is achieved model FLOP/s over the device's peak; on a CPU the peak is a large
GEMM measured in the same run (so both figures share the machine's state).

    python benchmarks/train_step.py --encoder vit_small --frames 16 --res 224 --batch 2
    python benchmarks/train_step.py --encoder vit_large --frames 16 --res 256 --batch 24 --precision bf16 --compile
    python benchmarks/train_step.py --encoder vit_large --frames 16 --res 256 --batch 24 --precision bf16 --max-batch

Prints one JSON line per configuration. `--max-batch` (GPU) first searches the largest batch whose step fits in
memory (doubling from --batch, then bisecting to a multiple of 8) and times that batch.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import time
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from jepa.masks import VJEPA2_MASKS, MaskCollator
from jepa.models import vit
from jepa.models.predictor import VisionTransformerPredictor
from jepa.optim import ema_update, param_groups
from jepa.tasks.pretrain import PretrainTask

# dense bf16 / tf32 peaks (FLOP/s) of GPUs we report against
GPU_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def block_flops(tokens: int, dim: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one transformer block on `tokens` tokens (2 per multiply-add)."""
    linear = 2 * tokens * dim * (3 * dim + dim + 2 * mlp_ratio * dim)
    attention = 2 * 2 * tokens * tokens * dim
    return linear + attention


def analytic_step_flops(encoder, predictor, num_tokens: int, masks: list[tuple[int, int]], batch: int) -> float:
    """Model FLOPs of one training step: target forward + 3x (forward + backward) of context encoder and predictor.

    `masks` holds (context tokens, target tokens) per mask family. The patch embedding is counted for every
    encoder pass; normalisation, RoPE and softmax are not (they are a few percent and memory-bound).
    """
    D, depth, ratio = (
        encoder.embed_dim,
        len(encoder.blocks),
        encoder.blocks[0].mlp.fc1.out_features / encoder.embed_dim,
    )
    patch = 2 * D * encoder.patch_embed.proj.weight[0].numel()
    Dp = predictor.predictor_embed.out_features
    p_depth = len(predictor.predictor_blocks)
    p_ratio = predictor.predictor_blocks[0].mlp.fc1.out_features / Dp
    total = depth * block_flops(num_tokens, D, ratio) + num_tokens * patch  # target encoder, forward only
    for ctx, tgt in masks:
        enc = depth * block_flops(ctx, D, ratio) + num_tokens * patch
        pred = p_depth * block_flops(ctx + tgt, Dp, p_ratio) + 2 * ctx * D * Dp + 2 * tgt * Dp * D
        total += 3 * (enc + pred)
    return batch * total


def measure_gemm_peak(device: torch.device, dtype: torch.dtype, n: int = 4096, seconds: float = 3.0) -> float:
    """FLOP/s of a square n x n matmul, the practical peak of this device in this process."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    iters, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        iters += 1
        sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(args, device: torch.device) -> tuple[PretrainTask, torch.optim.Optimizer, MaskCollator]:
    geometry = dict(img_size=args.res, num_frames=args.frames, patch_size=16, tubelet_size=2)
    encoder = getattr(vit, args.encoder)(**geometry, use_activation_checkpointing=args.act_ckpt)
    predictor = VisionTransformerPredictor(
        **geometry, embed_dim=encoder.embed_dim, use_activation_checkpointing=args.act_ckpt
    )
    task = PretrainTask(
        encoder,
        predictor,
        optimizer=None,
        lr_schedule=lambda s: 5.25e-4,
        wd_schedule=lambda s: 0.04,
        ema_schedule=lambda s: 0.99925,
    ).to(device)
    optimizer = torch.optim.AdamW(param_groups(task.trainable_modules(), 0.04), lr=5.25e-4, fused=not args.foreach)
    if args.compile:
        # static shapes: one graph per mask family (fixed kept-token counts); dynamic token counts hit a wrong
        # fake-stride in the CPU flash-attention backward (torch 2.14)
        for module in (task.encoder, task.target_encoder, task.predictor):
            module.compile(dynamic=False)
    collator = MaskCollator(VJEPA2_MASKS, num_frames=args.frames, crop_size=args.res, fixed_counts=args.compile)
    return task, optimizer, collator


def make_batches(args, collator: MaskCollator, device: torch.device) -> list[dict]:
    """The warm-up and timed batches: masks sampled per step (seeds 0, 1, ...), one shared random video."""
    g = torch.Generator().manual_seed(0)
    video = torch.randn(args.batch, 3, args.frames, args.res, args.res, generator=g).to(device)
    batches = []
    for seed in range(args.warmup + args.steps):
        masks = collator(args.batch, torch.Generator().manual_seed(seed))
        batches.append({"video": video, **{k: [t.to(device) for t in v] for k, v in masks.items()}})
    return batches


def mixed_precision(args, device: torch.device):
    """bf16 autocast for `--precision bf16`, else no context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()


def train_step(task: PretrainTask, optimizer: torch.optim.Optimizer, batch: dict, autocast) -> torch.Tensor:
    with autocast:
        loss, _ = task.loss_and_metrics(batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ema_update(task.target_encoder, task.encoder, 0.99925)
    return loss


def _trial(args, batch: int) -> None:
    """Builds the model at `batch` and runs the benchmark's steps (every sampled mask) once."""
    device = torch.device(args.device)
    trial = argparse.Namespace(**{**vars(args), "batch": batch})
    task, optimizer, collator = build(trial, device)
    autocast = mixed_precision(args, device)
    for b in make_batches(trial, collator, device):
        train_step(task, optimizer, b, autocast)
    sync(device)


def fits(args, batch: int) -> bool:
    """Whether the benchmark's steps at `batch` run without a CUDA out-of-memory error."""
    try:
        _trial(args, batch)
        ok = True
    except torch.cuda.OutOfMemoryError:
        ok = False
    # the trial's tensors are unreachable once its frame (and the exception's traceback) is gone: hand them back
    gc.collect()
    torch.cuda.empty_cache()
    return ok


def largest_batch(args) -> int:
    """Largest batch (a multiple of 8 once past --batch) whose step fits, by doubling then bisection."""
    lo, hi = args.batch, None
    if not fits(args, lo):
        raise SystemExit(f"--batch {lo} does not fit in memory; start the search from a smaller --batch")
    while hi is None:
        if fits(args, 2 * lo):
            lo *= 2
        else:
            hi = 2 * lo
    while hi - lo > 8:
        mid = (lo + hi) // 2 // 8 * 8
        if fits(args, mid):
            lo = mid
        else:
            hi = mid
    return lo


def run(args) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    task, optimizer, collator = build(args, device)
    task.train()
    bf16 = args.precision == "bf16"
    autocast = mixed_precision(args, device)

    batches = make_batches(args, collator, device)
    num_tokens = (args.frames // 2) * (args.res // 16) ** 2

    def step_masks(b: dict) -> list[tuple[int, int]]:
        return [(c.size(1), t.size(1)) for c, t in zip(b["ctx_idx"], b["tgt_idx"], strict=True)]

    masks = step_masks(batches[0])
    first = analytic_step_flops(task.encoder, task.predictor, num_tokens, masks, args.batch)
    # without fixed counts each step samples its own token counts: average the FLOPs over the timed steps
    timed = batches[args.warmup :]
    flops = sum(
        analytic_step_flops(task.encoder, task.predictor, num_tokens, step_masks(b), args.batch) for b in timed
    )
    flops /= len(timed)

    counted = None
    if args.count_flops:
        with FlopCounterMode(display=False) as counter:
            train_step(task, optimizer, batches[0], autocast)
        counted = counter.get_total_flops()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for b in batches[: args.warmup]:
        train_step(task, optimizer, b, autocast)
    sync(device)
    times = []
    for b in batches[args.warmup :]:
        start = time.perf_counter()
        train_step(task, optimizer, b, autocast)
        sync(device)
        times.append(time.perf_counter() - start)
    step_s = sorted(times)[len(times) // 2]  # median

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_PEAKS.items() if k in name), None)
        peak_source = f"datasheet dense {'bf16' if bf16 else 'tf32'}"
        memory_gb = torch.cuda.max_memory_allocated(device) / 2**30
        gemm = measure_gemm_peak(device, torch.bfloat16 if bf16 else torch.float32, 8192)
    else:
        name = platform.processor() or platform.machine()
        peak_source = f"measured {args.gemm_size}^3 fp32 GEMM, {torch.get_num_threads()} threads"
        peak = measure_gemm_peak(device, torch.float32, args.gemm_size)
        memory_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        gemm = peak
    achieved = flops / step_s
    return {
        "encoder": args.encoder,
        "frames": args.frames,
        "res": args.res,
        "batch": args.batch,
        "precision": args.precision,
        "compile": args.compile,
        "act_ckpt": args.act_ckpt,
        "device": name,
        "step_s": round(step_s, 4),
        "clips_per_s": round(args.batch / step_s, 3),
        "tflop_per_step_analytic": round(flops / 1e12, 4),
        # the flop counter ran on the first (warm-up) step; its analytic figure beside it for the cross-check
        "tflop_per_step_counted": None if counted is None else round(counted / 1e12, 4),
        "tflop_counted_step_analytic": None if counted is None else round(first / 1e12, 4),
        "achieved_tflops": round(achieved / 1e12, 4),
        "peak_tflops": None if peak is None else round(peak / 1e12, 4),
        "peak_source": peak_source,
        "mfu": None if peak is None else round(achieved / peak, 4),
        "gemm_tflops_measured": round(gemm / 1e12, 4),
        "of_measured_gemm": round(achieved / gemm, 4),
        "peak_memory_gb": round(memory_gb, 3),
        "masks": masks,
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--encoder",
        default="vit_small",
        choices=["vit_tiny", "vit_small", "vit_base", "vit_large", "vit_huge", "vit_giant"],
    )
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--res", type=int, nargs="+", default=[224])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--act-ckpt", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--count-flops", action="store_true", help="cross-check with torch.utils.flop_counter")
    parser.add_argument("--foreach", action="store_true", help="foreach AdamW instead of the fused one we train with")
    parser.add_argument("--gemm-size", type=int, default=4096)
    parser.add_argument("--max-batch", action="store_true", help="time the largest batch that fits (CUDA only)")
    args = parser.parse_args()
    if args.max_batch:
        if not args.device.startswith("cuda"):
            raise SystemExit("--max-batch searches for a CUDA out-of-memory limit; run it on a GPU (--device cuda)")
        args.batch = largest_batch(argparse.Namespace(**{**vars(args), "res": args.res[0]}))
    for res in args.res:
        print(json.dumps(run(argparse.Namespace(**{**vars(args), "res": res}))), flush=True)


if __name__ == "__main__":
    main()

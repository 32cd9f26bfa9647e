"""Times the trainer's own pretraining step and reports throughput, FLOPs, MFU and memory.

The config is composed exactly as `launch/train.py` composes it (`+experiment=...` plus Hydra overrides), the task,
its compilation and the Lightning `Trainer` are built from it the same way, and `Trainer.fit` runs the steps: the
precision plugin, `PretrainTask.training_step` (target forward, context encoder + predictor per mask family, L1
loss), backward, the fused AdamW step, the EMA update and the logging. Only the data differ: one random clip and
masks drawn by the config's `MaskCollator` (seeds 0, 1, ...), already on the device, so a step's time is the
training step's. A step is timed from `on_train_batch_start` to `on_train_batch_end`, synchronised on CUDA.

    python benchmarks/train_step.py +experiment=vjepa2_small encoder.img_size=224 data.batch_size=2 trainer=cpu
    python benchmarks/train_step.py +experiment=vjepa2_large trainer=gpu data.batch_size=24         # compiled on CUDA
    python benchmarks/train_step.py --max-batch +experiment=vjepa2_large trainer=gpu data.batch_size=16

Prints one JSON line. MFU is achieved model FLOP/s over the device's peak: a GPU's datasheet dense bf16 / tf32
figure, and beside it (`of_measured_gemm`, and the only peak on a CPU) a large GEMM in the step's compute dtype
(bf16 under bf16-mixed) measured in the same process. `--max-batch` (CUDA) first searches the largest
`data.batch_size` whose steps fit in memory (doubling, then bisecting to a multiple of 8) and times that.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from jepa.models.vit import VIT_SIZES
from launch import train as train_launcher  # the entry point's own config helpers: one wiring

REPO = Path(__file__).resolve().parents[1]

train_launcher.register_resolvers()

# dense bf16 / tf32 peaks (FLOP/s) of GPUs we report against
GPU_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
DEFAULT_EXPERIMENT = "+experiment=vjepa2_small"


def compose_config(overrides: list[str]) -> DictConfig:
    """`launch/train.py`'s config for these overrides (`+experiment=vjepa2_small` unless one is given)."""
    if not any(o.startswith("+experiment=") for o in overrides):
        overrides = [DEFAULT_EXPERIMENT, *overrides]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def block_flops(tokens: int, dim: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one transformer block on `tokens` tokens (2 per multiply-add)."""
    linear = 2 * tokens * dim * (3 * dim + dim + 2 * mlp_ratio * dim)
    attention = 2 * 2 * tokens * tokens * dim
    return linear + attention


def analytic_step_flops(encoder, predictor, num_tokens: int, masks: list[tuple[int, int]], batch: int) -> float:
    """Model FLOPs of one training step: target forward + 3x (forward + backward) of context encoder and predictor.

    `masks` holds (context tokens, target tokens) per mask family. The patch embedding is counted for the tokens
    each encoder pass embeds (all for the target, the kept ones for the context); normalisation, RoPE and softmax
    are not (they are a few percent and memory-bound).
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
        enc = depth * block_flops(ctx, D, ratio) + ctx * patch
        pred = p_depth * block_flops(ctx + tgt, Dp, p_ratio) + 2 * ctx * D * Dp + 2 * tgt * Dp * D
        total += 3 * (enc + pred)
    return batch * total


def measure_gemm_peak(device: torch.device, dtype: torch.dtype, n: int = 4096, seconds: float = 3.0) -> float:
    """FLOP/s of a square n x n matmul in `dtype`, the practical peak of this device in this process."""
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
        torch.cuda.synchronize(device)


class StepTimer(Callback):
    """Per-step wall time of `Trainer.fit` (batch start to batch end, synchronised), and an optional `after_step`
    callable run outside the timed window after every step (an interleaved competitor, see train_step_reference.py).
    """

    def __init__(self, after_step: Callable[[int], None] | None = None) -> None:
        self.times: list[float] = []
        self.after_step = after_step
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        sync(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(pl_module.device)
        self.times.append(time.perf_counter() - self._start)
        if self.after_step is not None:
            self.after_step(batch_idx)


def build_trainer(cfg: DictConfig, steps: int, callbacks: list[Callback]) -> L.Trainer:
    """The config's `Trainer` (precision, accelerator, strategy, clipping, cuDNN benchmark) without loggers,
    checkpoints or progress output, for `steps` steps."""
    return instantiate(
        cfg.trainer,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=steps,
    )


def make_batches(cfg: DictConfig, count: int, device: torch.device) -> list[dict]:
    """`count` batches of one shared random (normalised) clip and masks from the config's collator, seeds 0, 1, ..."""
    collator = instantiate(cfg.mask, _convert_="all")
    batch, frames, size = cfg.data.batch_size, cfg.encoder.num_frames, cfg.encoder.img_size
    video = torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    out = []
    for seed in range(count):
        masks = collator(batch, torch.Generator().manual_seed(seed))
        out.append({"video": video, **{k: [t.to(device) for t in v] for k, v in masks.items()}})
    return out


def step_masks(batch: dict) -> list[tuple[int, int]]:
    return [(c.size(1), t.size(1)) for c, t in zip(batch["ctx_idx"], batch["tgt_idx"], strict=True)]


class Bench:
    """A built benchmark: the task (compiled as the config says), a trainer and the batches, on the trainer's device.

    `fit(batches, after_step)` runs `Trainer.fit` over `batches` and returns the per-step times.
    """

    def __init__(self, cfg: DictConfig, steps: int) -> None:
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.task = train_launcher.build_task(cfg)
        self.device = build_trainer(cfg, 1, []).strategy.root_device
        self.batches = make_batches(cfg, steps, self.device)

    def fit(self, batches: list[dict], after_step: Callable[[int], None] | None = None) -> list[float]:
        timer = StepTimer(after_step)
        trainer = build_trainer(self.cfg, len(batches), [timer])
        trainer.fit(self.task, train_dataloaders=DataLoader(batches, batch_size=None))
        return timer.times


def fits(cfg: DictConfig, steps: int) -> bool:
    """Whether `steps` training steps at the config's batch run without a CUDA out-of-memory error."""
    try:
        bench = Bench(cfg, steps)
        bench.fit(bench.batches)
        ok = True
    except torch.cuda.OutOfMemoryError:
        ok = False
    bench = None  # noqa: F841  (hand the trial's memory back before the next one)
    gc.collect()
    torch.cuda.empty_cache()
    return ok


def largest_batch(overrides: list[str], start: int, steps: int) -> int:
    """Largest `data.batch_size` (a multiple of 8 once past `start`) whose steps fit, by doubling then bisection."""

    def ok(batch: int) -> bool:
        return fits(compose_config([*overrides, f"data.batch_size={batch}"]), steps)

    lo, hi = start, None
    if not ok(lo):
        raise SystemExit(f"data.batch_size={lo} does not fit in memory; start the search from a smaller batch")
    while hi is None:
        if ok(2 * lo):
            lo *= 2
        else:
            hi = 2 * lo
    while hi - lo > 8:
        mid = (lo + hi) // 2 // 8 * 8
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def git_commit() -> str | None:
    """The checkout's commit (with "+dirty" when tracked files differ from it), read when this module was imported."""
    return _COMMIT


def _read_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO, capture_output=True).returncode
        return (head.stdout.strip() + ("+dirty" if dirty else "")) or None
    except OSError:
        return None


_COMMIT = _read_commit()


def encoder_name(cfg: DictConfig) -> str:
    """The factory name of the configured encoder size (vit_small, ...), else its width x depth."""
    name = VIT_SIZES.get((cfg.encoder.embed_dim, cfg.encoder.depth))
    return name[0] if name else f"vit_{cfg.encoder.embed_dim}x{cfg.encoder.depth}"


def describe(cfg: DictConfig) -> dict:
    return {
        "encoder": encoder_name(cfg),
        "frames": cfg.encoder.num_frames,
        "res": cfg.encoder.img_size,
        "batch": cfg.data.batch_size,
        "precision": str(cfg.trainer.precision),
        "compile": bool(cfg.compile),
        "compile_mode": cfg.get("compile_mode"),
        "fixed_counts": bool(cfg.mask.fixed_counts),
        "cudnn_benchmark": bool(cfg.trainer.benchmark),
        "act_ckpt": bool(cfg.encoder.use_activation_checkpointing),
    }


def peaks(device: torch.device, bf16: bool, gemm_size: int, seconds: float = 3.0) -> dict:
    """The device's peak (datasheet on GPUs) and a GEMM measured now in the step's compute dtype."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_PEAKS.items() if k in name), None)
        gemm = measure_gemm_peak(device, dtype, 8192, seconds)
        return {
            "device": name,
            "peak": peak,
            "peak_source": f"datasheet dense {'bf16' if bf16 else 'tf32'}",
            "gemm": gemm,
        }
    gemm = measure_gemm_peak(device, dtype, gemm_size, seconds)
    source = f"measured {gemm_size}^3 {'bf16' if bf16 else 'fp32'} GEMM, {torch.get_num_threads()} threads"
    return {"device": platform.processor() or platform.machine(), "peak": gemm, "peak_source": source, "gemm": gemm}


def run(
    overrides: list[str], steps: int, warmup: int, count_flops: bool, gemm_size: int, gemm_seconds: float = 3.0
) -> dict:
    cfg = compose_config(overrides)
    bench = Bench(cfg, warmup + steps)
    task, device = bench.task, bench.device
    num_tokens = (cfg.encoder.num_frames // cfg.encoder.tubelet_size) * (
        cfg.encoder.img_size // cfg.encoder.patch_size
    ) ** 2
    timed = bench.batches[warmup:]
    # without fixed counts each step samples its own token counts: average the FLOPs over the timed steps
    flops = sum(
        analytic_step_flops(task.encoder, task.predictor, num_tokens, step_masks(b), cfg.data.batch_size)
        for b in timed
    ) / len(timed)

    counted = first = None
    if count_flops:
        if cfg.compile:
            raise SystemExit("--count-flops counts the eager step: add compile=false")
        first = analytic_step_flops(
            task.encoder, task.predictor, num_tokens, step_masks(bench.batches[0]), cfg.data.batch_size
        )
        with FlopCounterMode(display=False) as counter:
            bench.fit(bench.batches[:1])
        counted = counter.get_total_flops()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    load = os.getloadavg()
    times = bench.fit(bench.batches)[warmup:]
    step_s = sorted(times)[len(times) // 2]  # median
    memory_gb = (
        torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    peak = peaks(device, str(cfg.trainer.precision).startswith("bf16"), gemm_size, gemm_seconds)
    achieved = flops / step_s
    return {
        **describe(cfg),
        "device": peak["device"],
        "step_s": round(step_s, 4),
        "step_times_s": [round(t, 4) for t in times],
        "clips_per_s": round(cfg.data.batch_size / step_s, 3),
        "tflop_per_step_analytic": round(flops / 1e12, 4),
        # the flop counter ran on the first (warm-up) step; its analytic figure beside it for the cross-check
        "tflop_per_step_counted": None if counted is None else round(counted / 1e12, 4),
        "tflop_counted_step_analytic": None if first is None else round(first / 1e12, 4),
        "achieved_tflops": round(achieved / 1e12, 4),
        "peak_tflops": None if peak["peak"] is None else round(peak["peak"] / 1e12, 4),
        "peak_source": peak["peak_source"],
        "mfu": None if peak["peak"] is None else round(achieved / peak["peak"], 4),
        "gemm_tflops_measured": round(peak["gemm"] / 1e12, 4),
        "of_measured_gemm": round(achieved / peak["gemm"], 4),
        "peak_memory_gb": round(memory_gb, 3),
        "masks": step_masks(timed[0]),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "commit": git_commit(),
        "overrides": overrides,
    }


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Other arguments: Hydra overrides.")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--count-flops", action="store_true", help="cross-check with torch.utils.flop_counter")
    parser.add_argument("--gemm-size", type=int, default=4096, help="CPU GEMM for the measured peak")
    parser.add_argument("--gemm-seconds", type=float, default=3.0, help="how long the peak GEMM is timed")
    parser.add_argument("--max-batch", action="store_true", help="time the largest batch that fits (CUDA only)")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse(argv)
    if args.max_batch:
        if not torch.cuda.is_available():
            raise SystemExit("--max-batch searches for a CUDA out-of-memory limit; run it on a GPU")
        start = compose_config(overrides).data.batch_size
        batch = largest_batch(overrides, start, args.warmup + args.steps)
        overrides = [*overrides, f"data.batch_size={batch}"]
    row = run(overrides, args.steps, args.warmup, args.count_flops, args.gemm_size, args.gemm_seconds)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

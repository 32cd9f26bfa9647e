"""Does bf16 autocast on the CPU train like fp32? `cpu_quick`'s 300-step loss curve, fp32 seeds against bf16 seeds.

    python benchmarks/cpu_bf16_curve.py                          # 3 fp32 + 3 bf16 runs under outputs/cpu_bf16_curve
    python benchmarks/cpu_bf16_curve.py --seeds 0 1 2 3 --window 25
    OMP_NUM_THREADS=1 python benchmarks/cpu_bf16_curve.py --parallel 6     # all runs at once, one thread each

Runs `launch/train.py +experiment=cpu_quick` once per (precision, seed) (a finished run is reused), then prints, per
window of steps, the mean training loss of every run, the fp32 seeds' range, and whether the bf16 seeds' mean lies in
it; and a summary: the fraction of windows inside the fp32 band, the final losses, and the mean gap between bf16 and
fp32 at the same seed against the fp32 seed-to-seed gap. Exit code 0 when every window's bf16 mean is inside the band.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}


def run_dir(out: Path, precision: str, seed: int) -> Path:
    return out / f"{precision}_seed{seed}"


def finished(out: Path, precision: str, seed: int, steps: int) -> bool:
    """Whether the run's last checkpoint is at `steps` (a half-done run is trained again from scratch: resuming would
    delete the CSV log of its first part, PITFALLS 13)."""
    last = run_dir(out, precision, seed) / "checkpoints" / "last.ckpt"
    if last.is_file() and torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= steps:
        return True
    shutil.rmtree(run_dir(out, precision, seed), ignore_errors=True)
    return False


def command(out: Path, precision: str, seed: int) -> list[str]:
    """`cpu_quick` at one precision and seed, logging every step to CSV."""
    folder = run_dir(out, precision, seed)
    return [
        sys.executable,
        str(REPO / "launch" / "train.py"),
        "+experiment=cpu_quick",
        f"seed={seed}",
        f"trainer.precision={PRECISIONS[precision]}",
        f"paths.output_dir={out}",
        f"run_name={folder.name}",
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "~callbacks.progress",
        "trainer.enable_progress_bar=false",
    ]


def train_all(out: Path, seeds: dict[str, list[int]], steps: int, parallel: int) -> None:
    """Every (precision, seed) run not finished yet, `parallel` at a time (the curves do not depend on the load)."""
    todo = [(p, s) for p in PRECISIONS for s in seeds[p] if not finished(out, p, s, steps)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for i in range(0, len(todo), parallel):
        procs = []
        for p, s in todo[i : i + parallel]:
            cmd = command(out, p, s)
            print("==", " ".join(cmd[2:]), flush=True)
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env))
        if any([proc.wait() for proc in procs]):
            raise SystemExit("a training run failed")


def losses(folder: Path) -> dict[int, float]:
    """step (from 1) -> train/loss."""
    out = {}
    with open(folder / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                out[int(row["step"]) + 1] = float(row["train/loss"])
    return out


def window_means(curve: dict[int, float], window: int, last: int) -> list[float]:
    return [statistics.fmean(curve[s] for s in range(a, a + window) if s in curve) for a in range(1, last + 1, window)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "cpu_bf16_curve")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fp32-seeds", type=int, nargs="+", default=None, help="other fp32 seeds (default: --seeds)")
    parser.add_argument("--window", type=int, default=30, help="steps per averaged window")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=1, help="training runs at a time")
    args = parser.parse_args(argv)
    seeds = {"fp32": args.fp32_seeds or args.seeds, "bf16": args.seeds}
    train_all(args.out, seeds, args.steps, args.parallel)
    curves = {
        (p, s): window_means(losses(run_dir(args.out, p, s)), args.window, args.steps)
        for p in PRECISIONS
        for s in seeds[p]
    }
    windows = len(next(iter(curves.values())))
    inside = 0
    header = ["steps"] + [f"{p} s{s}" for p, s in curves] + ["fp32 min", "fp32 max", "bf16 mean", "inside"]
    print(" | ".join(header))
    for w in range(windows):
        fp32 = [curves[("fp32", s)][w] for s in seeds["fp32"]]
        bf16 = statistics.fmean(curves[("bf16", s)][w] for s in args.seeds)
        ok = min(fp32) <= bf16 <= max(fp32)
        inside += ok
        first = w * args.window + 1
        cells = [f"{first}-{min(first + args.window - 1, args.steps)}"] + [f"{c[w]:.4f}" for c in curves.values()]
        print(" | ".join(cells + [f"{min(fp32):.4f}", f"{max(fp32):.4f}", f"{bf16:.4f}", "yes" if ok else "NO"]))
    shared = [s for s in seeds["bf16"] if s in seeds["fp32"]]
    same_seed = (
        statistics.fmean(abs(curves[("bf16", s)][w] - curves[("fp32", s)][w]) for s in shared for w in range(windows))
        if shared
        else float("nan")
    )
    fp32_seeds = seeds["fp32"]
    pairs = [(a, b) for i, a in enumerate(fp32_seeds) for b in fp32_seeds[i + 1 :]]
    seed_to_seed = statistics.fmean(
        abs(curves[("fp32", a)][w] - curves[("fp32", b)][w]) for a, b in pairs for w in range(windows)
    )
    print(f"bf16 seed mean inside the fp32 seeds' range in {inside}/{windows} windows")
    print(
        "final window: fp32 "
        + ", ".join(f"{curves[('fp32', s)][-1]:.4f}" for s in seeds["fp32"])
        + " | bf16 "
        + ", ".join(f"{curves[('bf16', s)][-1]:.4f}" for s in args.seeds)
    )
    print(f"mean |bf16 - fp32| at the same seed {same_seed:.4f}; mean |fp32 seed a - seed b| {seed_to_seed:.4f}")
    return 0 if inside == windows else 1


if __name__ == "__main__":
    sys.exit(main())

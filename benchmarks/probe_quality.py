"""Learning quality: does a tiny V-JEPA pretraining on CPU learn motion? Frozen-encoder probes against random init.

1. Pretrains `+experiment=probe_pretrain_cpu` (a 96-wide ViT, 8x8 patches, 8 frames at 32x32) on the embedded
   synthetic dataset (training split, seed 0), through `launch/train.py`'s `train(cfg)`.
2. Probes its frozen EMA target encoder, and the same architecture at random initialisation, with the attentive
   probe of `launch/probe.py` for motion direction (8 classes) and shape class (4 classes), evaluated on the
   held-out synthetic set (seed 1, 2 clips per video).
3. Prints a table (top-1 %, and the pretrained - random margin) and writes it to `<out>/probe_quality.json`.

    nice -n 5 python benchmarks/probe_quality.py                     # defaults: the numbers in BENCHMARKS.md
    python benchmarks/probe_quality.py --pretrain-steps 200 --probe-steps 50   # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from launch import probe as probe_launcher
from launch import train as train_launcher

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "disabled")

QUIET = ["logger=csv", "~callbacks.progress", "trainer.enable_progress_bar=false"]
TASKS = {"direction": 8, "label": 4}  # json field -> classes


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(name, overrides=overrides)


def pretrain(out: Path, steps: int) -> tuple[Path, float]:
    """Runs (or resumes, if `out` already holds it) the tiny pretraining; returns its last checkpoint and seconds."""
    start = time.perf_counter()
    cfg = compose_cfg(
        "train",
        [
            "+experiment=probe_pretrain_cpu",
            *QUIET,
            f"trainer.max_steps={steps}",
            f"paths.output_dir={out}",
            f"callbacks.checkpoint.every_n_train_steps={max(steps // 4, 1)}",
        ],
    )
    train_launcher.train(cfg)
    return out / "probe_pretrain_cpu" / "checkpoints" / "last.ckpt", time.perf_counter() - start


def run_probe(out: Path, checkpoint: Path | None, label_key: str, steps: int) -> dict:
    source = (
        ["checkpoint=null", "encoder=vit_micro", *PRETRAIN_ENCODER]
        if checkpoint is None
        else [f"checkpoint={checkpoint}"]
    )
    name = f"{'random' if checkpoint is None else 'pretrained'}_{label_key}"
    cfg = compose_cfg(
        "probe",
        [
            *QUIET,
            *source,
            f"label_key={label_key}",
            f"num_classes={TASKS[label_key]}",
            "probe_data.frames_per_clip=8",
            "probe_data.crop_size=32",
            "probe_head.num_heads=2",
            f"trainer.max_steps={steps}",
            f"paths.output_dir={out}",
            f"run_name={name}",
        ],
    )
    start = time.perf_counter()
    results = probe_launcher.probe(cfg)
    results["seconds"] = time.perf_counter() - start
    return results


# The architecture of configs/experiment/probe_pretrain_cpu.yaml, for the random-init baseline.
PRETRAIN_ENCODER = ["encoder.num_frames=8", "encoder.img_size=32", "encoder.patch_size=8"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "probe_quality")
    parser.add_argument("--pretrain-steps", type=int, default=4500)
    parser.add_argument("--probe-steps", type=int, default=1500)
    args = parser.parse_args()
    train_launcher.register_resolvers()
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    checkpoint, pretrain_s = pretrain(args.out, args.pretrain_steps)
    rows = {}
    for label_key in TASKS:
        for which, ckpt in (("random", None), ("pretrained", checkpoint)):
            rows[f"{which}_{label_key}"] = run_probe(args.out, ckpt, label_key, args.probe_steps)
    summary = {
        "pretrain_steps": args.pretrain_steps,
        "pretrain_minutes": round(pretrain_s / 60, 1),
        "probe_steps": args.probe_steps,
        "held_out_videos": rows["pretrained_direction"]["num_videos"],
    }
    print(f"pretraining: {args.pretrain_steps} steps in {pretrain_s / 60:.1f} min; probes: {args.probe_steps} steps")
    print(f"{'task':<22}{'random init':>14}{'pretrained':>14}{'margin':>10}")
    for label_key, classes in TASKS.items():
        rand, pre = rows[f"random_{label_key}"]["top1"], rows[f"pretrained_{label_key}"]["top1"]
        task = f"{'direction' if label_key == 'direction' else 'shape'} ({classes} cls)"
        print(f"{task:<22}{rand:>13.1f}%{pre:>13.1f}%{pre - rand:>+9.1f}")
        summary[label_key] = {"random_top1": rand, "pretrained_top1": pre, "margin": pre - rand}
    for key, row in rows.items():
        summary[key] = {k: row[k] for k in ("top1", "top5", "num_videos", "seconds")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe_quality.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

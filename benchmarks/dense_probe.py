"""Dense learning quality: which tokens does the moving shape cover? A linear probe on frozen per-token features.

1. Pretrains a tiny encoder with each objective on the embedded synthetic dataset, through `launch/train.py`'s
   `train(cfg)`: V-JEPA 2 (`--v2`, default `probe_pretrain_cpu`: 96-wide ViT, 8x8 patches, 8 frames at 32x32) and
   V-JEPA 2.1 (`--v21`, default `vjepa2_1_cpu_quick` brought to the same geometry and batch by
   `V21_DEFAULT_OVERRIDES`; an arm whose experiment file does not exist is skipped, saying so). Same budget:
   `--pretrain-steps` for both, or `--budget-minutes` of training each, the steps set from a measured
   seconds-per-step of each objective (two short timing runs, 10 and 30 steps).
2. Extracts per-token features (the encoder's inference output, (N, D) per clip; with `--all-levels` its taps
   concatenated, (N, levels * D)) of the frozen EMA target encoder of each, and of each architecture at random
   initialisation, on deterministic clips (frames 0, s, 2s, ... and a second clip later in the video; eval view = the
   whole frame resized): the probe's training split is the pretraining set (seed 0), its test split the held-out set
   (seed 1), as in `benchmarks/probe_quality.py`.
3. Labels each token (t, h, w): 1 when the shape covers at least `--cover-threshold` of its tubelet's pixels (2
   frames x one patch), from the shape geometry each sample's json records (`jepa.data.synthetic.shape_coverage`).
4. Fits a class-balanced logistic regression per encoder (L-BFGS, standardised features) and reports per-token
   accuracy, balanced accuracy and IoU of the "covered" class on the held-out tokens: a table, and
   `<out>/dense_probe.json`.

    OMP_NUM_THREADS=1 python benchmarks/dense_probe.py --pretrain-steps 1800   # the numbers in BENCHMARKS.md
    OMP_NUM_THREADS=1 python benchmarks/dense_probe.py --pretrain-steps 1800 --all-levels
    python benchmarks/dense_probe.py --budget-minutes 6                     # the same minutes of training per arm
    python benchmarks/dense_probe.py --pretrain-steps 20 --videos 32         # a quick smoke run
    python benchmarks/dense_probe.py --v21 my_2_1_experiment --v21-override data.batch_size=16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from jepa.checkpoints import load_encoder
from jepa.data.decode import decode_clip
from jepa.data.synthetic import ensure_synthetic_shards, shape_coverage, token_coverage
from jepa.data.transforms import VideoTransform
from launch import train as train_launcher

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

QUIET = ["logger=csv", "~callbacks.progress", "trainer.enable_progress_bar=false"]
# vjepa2_1_cpu_quick (micro ViT with taps 1 and 3, 2-level predictor, dense loss, a quarter image batches) brought to
# the input geometry and batch of probe_pretrain_cpu, so only the objective differs between the two arms (and the
# image batches that come with the 2.1 recipe).
V21_DEFAULT_OVERRIDES = (
    "encoder.img_size=32",
    "encoder.patch_size=8",
    "data.batch_size=16",
    "data.steps_per_epoch=100",
    "data.random_resize_scale=[0.3,1.0]",
)


def compose_cfg(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(name, overrides=overrides)


def experiment_cfg(experiment: str, overrides: list[str], out: Path, run_name: str, steps: int) -> DictConfig:
    return compose_cfg(
        "train",
        [
            f"+experiment={experiment}",
            *QUIET,
            *overrides,
            f"trainer.max_steps={steps}",
            f"paths.output_dir={out}",
            f"run_name={run_name}",
            f"callbacks.checkpoint.every_n_train_steps={max(steps // 4, 1)}",
        ],
    )


def timed_train(cfg: DictConfig) -> float:
    start = time.perf_counter()
    train_launcher.train(cfg)
    return time.perf_counter() - start


def seconds_per_step(experiment: str, overrides: list[str], out: Path) -> float:
    """Training seconds per step of an experiment, from two short fresh runs (their difference drops the startup)."""
    seconds = {}
    for steps in (10, 30):
        run = f"timing_{steps}"
        shutil.rmtree(out / run, ignore_errors=True)
        seconds[steps] = timed_train(experiment_cfg(experiment, overrides, out, run, steps))
        shutil.rmtree(out / run, ignore_errors=True)
    return max(seconds[30] - seconds[10], 1e-3) / 20


def pretrain(experiment: str, overrides: list[str], out: Path, steps: int) -> tuple[Path, float, DictConfig]:
    """Runs (or resumes, if `out` already holds it) one pretraining; returns its last checkpoint, seconds, config."""
    cfg = experiment_cfg(experiment, overrides, out, "pretrain", steps)
    seconds = timed_train(cfg)
    return out / "pretrain" / "checkpoints" / "last.ckpt", seconds, cfg


class TokenSet:
    """Per-token probe inputs of a synthetic shard set: deterministic clips and their per-token coverage.

    Args:
        shards: The synthetic shards (json with the shape geometry: format v2).
        num_frames: T of the encoder's clips; frame_step: stride between them; clips_per_video: clips evenly spread
            over each video; crop_size, patch_size, tubelet_size: the encoder's input geometry.
        max_videos: Use the first videos only.
    """

    def __init__(
        self,
        shards: list[str],
        num_frames: int,
        frame_step: int,
        crop_size: int,
        patch_size: int,
        tubelet_size: int,
        clips_per_video: int = 2,
        max_videos: int | None = None,
    ) -> None:
        view = VideoTransform(crop_size=crop_size, training=False)
        span = (num_frames - 1) * frame_step + 1
        clips, coverage = [], []
        samples = wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples())
        for n, sample in enumerate(samples):
            if max_videos is not None and n >= max_videos:
                break
            meta = json.loads(sample["json"])
            length, size = meta["n_frames"], meta["height"]
            if size * patch_size % crop_size:
                raise ValueError(f"frame side {size} does not map a {patch_size}-px patch at {crop_size} px to pixels")
            frames = decode_clip(sample["mp4"], length, 1, torch.Generator())  # the whole video, (L, S, S, 3)
            pixels = shape_coverage(meta, length, size)  # (L, S, S)
            for start in np.linspace(0, max(length - span, 0), clips_per_video).round().astype(int):
                idx = np.minimum(start + frame_step * np.arange(num_frames), length - 1)
                clips.append(view(frames[idx]))  # (3, T, crop, crop)
                cells = token_coverage(pixels[idx], tubelet_size, size * patch_size // crop_size)
                coverage.append(torch.from_numpy(cells.reshape(-1)))  # (N,) in the encoder's (t, h, w) order
        if not clips:
            raise ValueError(f"no samples in {shards}")
        self.clips = torch.stack(clips)  # (M, 3, T, crop, crop)
        self.coverage = torch.stack(coverage)  # (M, N)

    @torch.no_grad()
    def features(self, encoder: torch.nn.Module, all_levels: bool = False, batch_size: int = 32) -> torch.Tensor:
        """(M * N, D) frozen per-token features, token-major within each clip (aligned with `coverage`).

        ``all_levels`` takes the encoder's training output (every tap, concatenated: (M * N, levels * D)).
        """
        encoder.eval()
        clips = [self.clips[i : i + batch_size] for i in range(0, len(self.clips), batch_size)]
        out = [encoder(x, all_levels=True) if all_levels else encoder(x) for x in clips]
        feats = torch.cat(out)  # (M, N, D)
        if feats.shape[1] != self.coverage.shape[1]:
            raise ValueError(f"encoder gives {feats.shape[1]} tokens per clip, labels have {self.coverage.shape[1]}")
        return feats.reshape(-1, feats.shape[-1])


def fit_linear_probe(
    x: torch.Tensor, y: torch.Tensor, l2: float = 1e-4, iters: int = 200
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-balanced logistic regression (L-BFGS) on standardised features.

    Args:
        x: (M, D) features; y: (M,) float labels in {0, 1}; l2: weight penalty; iters: L-BFGS iterations.

    Returns:
        Feature mean (D,), std (D,), weight (D,) and bias (): logit = ((x - mean) / std) @ weight + bias.
    """
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    positives = y.sum().clamp(min=1)
    pos_weight = (len(y) - positives) / positives  # both classes weigh the same in the loss
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ weight + bias, y, pos_weight=pos_weight)
        loss = loss + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return mean, std, weight.detach(), bias.detach()


def dense_metrics(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Per-token accuracy, balanced accuracy and IoU of the positive class, in %; boolean (M,) inputs."""
    tp = (predicted & target).sum().item()
    tn = (~predicted & ~target).sum().item()
    fp = (predicted & ~target).sum().item()
    fn = (~predicted & target).sum().item()
    tpr = tp / max(tp + fn, 1)
    tnr = tn / max(tn + fp, 1)
    return {
        "accuracy": 100 * (tp + tn) / max(len(target), 1),
        "balanced_accuracy": 100 * (tpr + tnr) / 2,
        "iou": 100 * tp / max(tp + fp + fn, 1),
    }


def probe(
    encoder: torch.nn.Module, train: TokenSet, test: TokenSet, threshold: float, all_levels: bool = False
) -> dict[str, float]:
    """Fits the linear probe on ``train``'s tokens and returns its metrics (`dense_metrics`) on ``test``'s."""
    start = time.perf_counter()
    y_train = (train.coverage.reshape(-1) >= threshold).float()
    mean, std, weight, bias = fit_linear_probe(train.features(encoder, all_levels), y_train)
    logits = ((test.features(encoder, all_levels) - mean) / std) @ weight + bias
    results = dense_metrics(logits > 0, test.coverage.reshape(-1) >= threshold)
    results["seconds"] = time.perf_counter() - start
    return results


def random_encoder(cfg: DictConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return instantiate(cfg.encoder, _convert_="all").requires_grad_(False)


def token_sets(cfg: DictConfig, args: argparse.Namespace) -> tuple[TokenSet, TokenSet]:
    """Probe train split (the pretraining set, seed 0) and test split (held-out, seed 1) for cfg's encoder."""
    probe_cfg = compose_cfg("probe", [])  # the embedded datasets' settings, shared with launch/probe.py
    train_shards = ensure_synthetic_shards(cfg.data.synthetic_dir, **OmegaConf.to_container(cfg.data.synthetic))
    test_shards = ensure_synthetic_shards(
        probe_cfg.probe_data.val_synthetic_dir, **OmegaConf.to_container(probe_cfg.probe_data.val_synthetic)
    )
    enc = cfg.encoder
    geometry = dict(
        num_frames=enc.num_frames,
        frame_step=cfg.data.frame_step,
        crop_size=enc.img_size,
        patch_size=enc.patch_size,
        tubelet_size=enc.tubelet_size,
        clips_per_video=args.clips_per_video,
        max_videos=args.videos,
    )
    return TokenSet(train_shards, **geometry), TokenSet(test_shards, **geometry)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "dense_probe")
    parser.add_argument("--v2", default="probe_pretrain_cpu", help="experiment with the V-JEPA 2 objective")
    parser.add_argument("--v21", default="vjepa2_1_cpu_quick", help="experiment with the V-JEPA 2.1 objective")
    parser.add_argument("--v2-override", action="append", default=[], help="extra Hydra override for the 2 arm")
    parser.add_argument(
        "--v21-override",
        action="append",
        default=None,
        help=f"Hydra override for the 2.1 arm (repeatable; replaces the default {' '.join(V21_DEFAULT_OVERRIDES)})",
    )
    parser.add_argument("--pretrain-steps", type=int, default=1800, help="steps of each arm (without a budget)")
    parser.add_argument("--budget-minutes", type=float, default=None, help="training minutes per arm instead")
    parser.add_argument("--videos", type=int, default=256, help="videos per probe split")
    parser.add_argument("--clips-per-video", type=int, default=2)
    parser.add_argument("--cover-threshold", type=float, default=0.5, help="covered share that makes a token 1")
    parser.add_argument(
        "--all-levels", action="store_true", help="probe every encoder tap concatenated, not the inference output"
    )
    args = parser.parse_args(argv)
    if args.v21_override is None:
        args.v21_override = list(V21_DEFAULT_OVERRIDES) if args.v21 == "vjepa2_1_cpu_quick" else []
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    train_launcher.register_resolvers()
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    arms = {"vjepa2": (args.v2, args.v2_override), "vjepa2_1": (args.v21, args.v21_override)}
    summary: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    rows: dict[str, dict[str, Any]] = {}
    tokens: dict[str, tuple[TokenSet, TokenSet]] = {}
    for arm, (experiment, overrides) in arms.items():
        if not (ROOT / "configs" / "experiment" / f"{experiment}.yaml").is_file():
            print(f"{arm}: skipped, configs/experiment/{experiment}.yaml does not exist")
            summary[arm] = {"skipped": f"configs/experiment/{experiment}.yaml not found"}
            continue
        out = args.out / arm
        steps, per_step = args.pretrain_steps, None
        if args.budget_minutes is not None:
            per_step = seconds_per_step(experiment, overrides, out)
            steps = max(int(args.budget_minutes * 60 / per_step), 10)
        checkpoint, seconds, cfg = pretrain(experiment, overrides, out, steps)
        key = json.dumps(OmegaConf.to_container(cfg.encoder, resolve=True), sort_keys=True)
        if key not in tokens:  # one set of clips per input geometry, one random init per architecture
            tokens[key] = token_sets(cfg, args)
            baseline = random_encoder(cfg)
            rows[f"random_init ({arm} arch)"] = probe(baseline, *tokens[key], args.cover_threshold, args.all_levels)
        encoder = load_encoder(checkpoint, which="target", encoder=random_encoder(cfg))
        rows[arm] = probe(encoder, *tokens[key], args.cover_threshold, args.all_levels)
        rows[arm].update(experiment=experiment, steps=steps, pretrain_minutes=round(seconds / 60, 2))
        if per_step is not None:
            rows[arm]["seconds_per_step"] = round(per_step, 3)
        test = tokens[key][1]
        summary[f"{arm}_test_tokens"] = test.coverage.numel()
        summary[f"{arm}_positive_fraction"] = (test.coverage >= args.cover_threshold).float().mean().item() * 100
    summary["rows"] = rows
    print(f"{'encoder':<30}{'steps':>7}{'minutes':>9}{'accuracy':>10}{'bal. acc':>10}{'IoU':>8}")
    for name, row in rows.items():
        steps = str(row.get("steps", "-"))
        minutes = f"{row['pretrain_minutes']:.1f}" if "pretrain_minutes" in row else "-"
        print(
            f"{name:<30}{steps:>7}{minutes:>9}{row['accuracy']:>9.1f}%{row['balanced_accuracy']:>9.1f}%"
            f"{row['iou']:>7.1f}%"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dense_probe.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

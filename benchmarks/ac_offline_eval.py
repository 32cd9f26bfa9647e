"""Offline world-model benchmark: latent rollout error per step vs "repeat last latent" and "shuffled actions".

python benchmarks/ac_offline_eval.py --checkpoint outputs/tworooms_ac/checkpoints/last.ckpt

Evaluates on the held-out split of the embedded Two Rooms trajectories (generated if absent) and prints a markdown
table for BENCHMARKS.md: the error of the model with the true actions, each baseline, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from jepa.checkpoints import load_world_model
from jepa.envs.recorders import TwoRoomsDataModule
from jepa.tasks.action import rollout_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-dir", default="data/two_rooms")
    parser.add_argument(
        "--lossless", action="store_true", help="exact frames (what the planner sees), as data.embedded.lossless"
    )
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--frame-step", type=int, default=4, help="control steps per latent step, as in training")
    parser.add_argument("--num-windows", type=int, default=256)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    wm = load_world_model(args.checkpoint)
    dm = TwoRoomsDataModule(
        embedded_dir=args.data_dir,
        embedded={"lossless": True} if args.lossless else None,
        split="val",
        batch_size=16,
        num_workers=0,
        frames_per_clip=args.horizon + 1,
        frame_step=args.frame_step,
        crop_size=wm.encoder.img_size,
    )
    dm.setup()
    errors = rollout_errors(wm, dm.train_dataloader(), args.horizon, args.num_windows)
    print(f"{errors['windows']} held-out windows, frame step {args.frame_step}, {time.perf_counter() - start:.0f} s\n")
    print("| step | true actions | shuffled actions | repeat last | model / shuffled | model / repeat | gap to the "
          "better baseline / its standard error |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for h in range(args.horizon):
        m, s, r = errors["model"][h], errors["shuffled_actions"][h], errors["repeat_last"][h]
        se = errors["se_model_vs_shuffled"][h] if s < r else errors["se_model_vs_repeat"][h]
        z = (min(s, r) - m) / se if se > 0 else float("inf")
        print(f"| {h + 1} | {m:.4f} | {s:.4f} | {r:.4f} | {m / s:.2f} | {m / r:.2f} | {z:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(errors, f, indent=2)


if __name__ == "__main__":
    main()

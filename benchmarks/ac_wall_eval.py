"""World-model benchmark for planning: one-step latent error by action size, free moves against moves into the wall.

python benchmarks/ac_wall_eval.py --checkpoint outputs/tworooms_ac/checkpoints/last.ckpt

A planner asks the world model about actions the random walks it trained on may not show: up to 4 x 2.45 px per
latent step, straight into walls. For each action size this draws 192 starts on the fixed wall (half 2-8 px in
front of the wall heading into it, half anywhere, any heading), renders the true outcome of one latent step
(`--frame-step` equal environment steps) and compares the model's prediction from the start frame with the
encoded outcome (latent L1), next to "repeat last" (the start latent). A move is "blocked" when the agent covered
less than 60% of the action: a model that has learned the wall predicts those as well as it predicts free moves.
A model that has not predicts a dot half inside the wall, which the planning energy can mistake for progress.
Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from jepa.checkpoints import load_world_model
from jepa.envs.two_rooms import FIXED_DOOR_Y, FIXED_WALL_X, MAX_STEP, Layout, move, render, sample_in_room


def starts_and_outcomes(
    rng: np.random.Generator, layout: Layout, size: float, count: int, frame_step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, 2) starts, (count, 2) latent-step actions of norm `size`, (count, 2) true end positions."""
    starts, actions, ends = [], [], []
    for i in range(count):
        if i % 2 == 0:  # in front of the wall, heading into it (the door rows included: some pass)
            room = int(rng.integers(2))
            x = layout.wall_x + (-1 if room == 0 else 1) * rng.uniform(3.0, 7.0)
            start = np.array([x, rng.uniform(6.0, 58.0)])
            angle = (0.0 if room == 0 else np.pi) + rng.uniform(-0.6, 0.6)
        else:
            start = sample_in_room(rng, layout, int(rng.integers(2)))
            angle = rng.uniform(-np.pi, np.pi)
        action = size * np.array([np.cos(angle), np.sin(angle)])
        end = start.copy()
        for _ in range(frame_step):
            end = move(layout, end, action / frame_step)
        starts.append(start), actions.append(action), ends.append(end)
    return np.stack(starts), np.stack(actions), np.stack(ends)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sizes", default="2,4,6,8,9.8", help="latent-step action norms in px (at most 4 x 2.45)")
    parser.add_argument("--count", type=int, default=192, help="starts per action size")
    parser.add_argument("--frame-step", type=int, default=4, help="environment steps per latent step, as in training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    model = load_world_model(args.checkpoint)
    layout, rng = Layout(FIXED_WALL_X, FIXED_DOOR_Y), np.random.default_rng(args.seed)

    def encode(positions: np.ndarray) -> torch.Tensor:  # (B, 2) -> (B, N, D)
        images = torch.from_numpy(np.stack([render(layout, p) for p in positions]))
        return model.encode(images[:, None])[:, 0]  # the world model preprocesses raw renders itself

    rows = []
    for size in (float(s) for s in args.sizes.split(",")):
        if size > args.frame_step * MAX_STEP + 1e-6:
            raise SystemExit(f"--sizes: {size} px exceeds {args.frame_step} x {MAX_STEP} px, what the env allows")
        starts, actions, ends = starts_and_outcomes(rng, layout, size, args.count, args.frame_step)
        before, after = encode(starts), encode(ends)
        one_step = lambda a: torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)  # noqa: E731  (B, 2) -> (B, 1, 2)
        predicted = model.rollout(before.unsqueeze(1), one_step(actions), one_step(starts))[:, 0]
        error = (predicted - after).abs().mean((1, 2)).numpy()
        repeat = (before - after).abs().mean((1, 2)).numpy()
        blocked = np.linalg.norm(ends - starts, axis=1) < 0.6 * size
        rows.append((size, error, repeat, blocked))
    print(f"{args.checkpoint}: {args.count} starts per size, fixed wall, {time.perf_counter() - t0:.0f} s\n")
    print("| latent-step action (px) | free: n | model | repeat last | blocked: n | model | repeat last |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size, error, repeat, blocked in rows:
        cells = []
        for part in (~blocked, blocked):
            n = int(part.sum())
            cells += [str(n), f"{error[part].mean():.4f}" if n else "-", f"{repeat[part].mean():.4f}" if n else "-"]
        print(f"| {size:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

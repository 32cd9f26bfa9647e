"""Long rollouts into the wall: where does a jointly trained world model imagine the dot, step after step?

python benchmarks/wall_rollouts.py --checkpoint outputs/tworooms_wm/checkpoints/last.ckpt [--steps 40] [--threads 1]

A planner that pushes into the wall for tens of steps trusts the model to keep the dot there. For each of
`--layouts` random layouts this draws `--walks` starts anywhere in a room and heads each walk at full speed toward
the wall (plus Gaussian drift of std `--drift` px per step, clipped to the 2.45 px step), runs the true dynamics (walls stop the dot) and the
model's rollout from the start frame on the same actions, and decodes every predicted latent to the free pixel of
that layout whose rendered latent is nearest. It prints the decoded position's error against the true one at chosen
steps and the share of walks whose true path stays in its room while the decoded dot reaches the other room: the
model "passes through the wall". `benchmarks/wall_eval.py` measures the same failure one step at a time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.latent_geometry import encode_positions, free_pixels
from jepa.checkpoints import load_world_model
from jepa.envs.two_rooms import MAX_STEP, Layout, move, render, sample_in_room, sample_layout


def walks_into_wall(
    rng: np.random.Generator, layout: Layout, count: int, steps: int, drift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, 2) starts, (count, steps, 2) actions (full speed toward the wall plus Gaussian drift, clipped to the
    environment's 2.45 px) and (count, steps, 2) true positions after each action."""
    starts, actions, paths = [], [], []
    for _ in range(count):
        start = sample_in_room(rng, layout, int(rng.integers(2)))
        toward = 1.0 if start[0] < layout.wall_x else -1.0
        walk = np.array([toward * MAX_STEP, 0.0]) + rng.normal(0.0, drift, (steps, 2))
        walk *= np.minimum(1.0, MAX_STEP / np.linalg.norm(walk, axis=1, keepdims=True))
        position, path = start, []
        for action in walk:
            position = move(layout, position, action)
            path.append(position)
        starts.append(start), actions.append(walk), paths.append(np.stack(path))
    return np.stack(starts), np.stack(actions), np.stack(paths)


def decode(latents: torch.Tensor, grid_latents: torch.Tensor, grid: np.ndarray) -> np.ndarray:
    """(N, D) latents -> (N, 2) the grid position whose latent (G, D) is nearest (Euclidean)."""
    return grid[torch.cdist(latents, grid_latents).argmin(dim=1).numpy()]


def through_wall(layout: Layout, starts: np.ndarray, paths: np.ndarray, decoded: np.ndarray) -> tuple[int, int]:
    """(walks whose true path stays in its start room but whose decoded path reaches the other room, walks whose
    true path stays in its start room), from (S, 2) starts and (S, H, 2) true and decoded paths."""
    room = np.array([layout.room(x) for x in starts[:, 0]])[:, None]
    rooms = lambda xs: np.vectorize(layout.room)(xs)  # noqa: E731
    stayed = (rooms(paths[..., 0]) == room).all(axis=1)
    left = (rooms(decoded[..., 0]) != room).any(axis=1)
    return int((stayed & left).sum()), int(stayed.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a jointly trained world model (+experiment=tworooms_wm)")
    parser.add_argument("--steps", type=int, default=40, help="rollout length in environment steps")
    parser.add_argument("--layouts", type=int, default=24)
    parser.add_argument("--walks", type=int, default=8, help="walks per layout")
    parser.add_argument("--drift", type=float, default=0.8, help="std of the per-step drift added to the push (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    model = load_world_model(args.checkpoint)
    rng = np.random.default_rng(args.seed)

    errors, crossed, stayed = np.zeros(args.steps), 0, 0
    for _ in range(args.layouts):
        layout = sample_layout(rng, fixed=False)
        grid = free_pixels(layout)
        grid_latents = torch.from_numpy(encode_positions(model, layout, grid)).float()
        starts, actions, paths = walks_into_wall(rng, layout, args.walks, args.steps, args.drift)
        first = model.encode(torch.from_numpy(np.stack([render(layout, p) for p in starts]))[:, None])
        states = torch.as_tensor(starts, dtype=torch.float32)[:, None]
        predicted = model.rollout(first, torch.as_tensor(actions, dtype=torch.float32), states)
        decoded = decode(predicted.flatten(2).flatten(0, 1), grid_latents, grid).reshape(paths.shape)
        errors += np.linalg.norm(decoded - paths, axis=-1).sum(axis=0)
        c, s = through_wall(layout, starts, paths, decoded)
        crossed, stayed = crossed + c, stayed + s
    walks = args.layouts * args.walks
    marks = [t for t in (1, 4, 8, 16, 24, 32, 40, 60, 90) if t <= args.steps]
    print(
        f"{args.checkpoint}: {walks} walks into the wall, {args.layouts} random layouts, {args.steps} steps, ", end=""
    )
    print(f"drift {args.drift} px, {time.perf_counter() - t0:.0f} s\n")
    print("| step | " + " | ".join(str(t) for t in marks) + " |")
    print("|---" * (len(marks) + 1) + "|")
    print("| decoded position error (px) | " + " | ".join(f"{errors[t - 1] / walks:.1f}" for t in marks) + " |")
    print(f"\nthrough the wall: {crossed}/{stayed} walks that stay in their room ({crossed / max(stayed, 1):.0%})")


if __name__ == "__main__":
    main()

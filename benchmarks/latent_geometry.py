"""The geometry of a Two Rooms latent, without a planner: does latent distance follow the agent's path length?

python benchmarks/latent_geometry.py --checkpoint outputs/tworooms_wm/checkpoints/last.ckpt --layouts 40 \
    --first-seed 2000 [--out geometry.json]

For the layout of each episode seed (`TwoRoomsEnv.reset(seed)`, the layouts of `distance_quality.py`'s episodes),
the agent is rendered at every free pixel and encoded. From `--sources` random free pixels (the goals), it reports:

- `geodesic_spearman`: Spearman's rank correlation, per goal, between the latent distance to the goal and the
  shortest-path distance (8-neighbour moves around the wall) over every free pixel, averaged: 1 means the latent
  distance orders every position as a path would, which is what a planner descending it needs.
- `cross_room_spearman`: the same over the pixels of the other room only (there a straight line and a path differ
  most: the path goes through the door).
- `euclidean_spearman`: the same against the straight-line distance, which ignores the wall.
- `room_pc_corr`: |correlation| between the latent's first principal component (over the layout's free pixels) and
  the room the pixel is in: near 1 when the largest direction of the latent separates the rooms.

`--latent position|slow [--commute] --slow-features K` scores `distance_quality.py`'s stand-in latents instead of a
checkpoint (no training needed): they calibrate the figures against planning success with the true dynamics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.csgraph import dijkstra
from scipy.stats import rankdata

from benchmarks.distance_quality import add_latent_arguments, check_latent_arguments, free_pixel_graph, latent_encoder
from jepa.envs.adapters import TwoRoomsAdapter
from jepa.envs.two_rooms import Layout, render_batch


def free_pixels(layout: Layout) -> np.ndarray:
    """(N, 2) (x, y) of the layout's free pixels, row-major."""
    ys, xs = np.nonzero(~layout.wall_mask())
    return np.stack([xs, ys], axis=1)


def path_lengths(layout: Layout, sources: np.ndarray) -> np.ndarray:
    """(S, N) shortest-path lengths (px, 8-neighbour moves of length 1 or sqrt 2 between free pixels) from the free
    pixels indexed by `sources` to every free pixel (in `free_pixels` order)."""
    _, graph = free_pixel_graph(layout, diagonal=True)
    return dijkstra(graph, directed=False, indices=sources)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each row of (S, N) `a` with the same row of `b`: (S,)."""
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    return (ra * rb).sum(axis=1) / np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))


@torch.no_grad()
def encode_positions(encoder, layout: Layout, positions: np.ndarray, chunk: int = 512) -> np.ndarray:
    """(N, D) latents of the agent rendered at (N, 2) `positions` in `layout` (token latents are flattened)."""
    latents = []
    for part in np.array_split(positions, max(1, len(positions) // chunk)):
        frames = render_batch(np.array([layout.wall_x]), np.array([layout.door_y]), part[None].astype(float))[0]
        latents.append(encoder.encode(torch.from_numpy(frames)[:, None])[:, 0].flatten(1).double())
    return torch.cat(latents).numpy()


def layout_geometry(encoder, layout: Layout, sources: int, rng: np.random.Generator) -> dict[str, float]:
    """The module docstring's four figures for one layout."""
    pixels = free_pixels(layout)
    z = encode_positions(encoder, layout, pixels)
    goals = rng.choice(len(pixels), size=min(sources, len(pixels)), replace=False)
    latent = np.linalg.norm(z[goals][:, None] - z[None], axis=-1)  # (S, N)
    path = path_lengths(layout, goals)
    straight = np.linalg.norm(pixels[goals][:, None] - pixels[None], axis=-1).astype(float)
    room = (pixels[:, 0] > layout.wall_x).astype(float)
    # the other room's pixels of each goal (the door's own pixels count for their side of the centre line)
    other = room[None] != room[goals][:, None]
    cross = [spearman_rows(latent[i : i + 1, other[i]], path[i : i + 1, other[i]])[0] for i in range(len(goals))]
    centred = z - z.mean(axis=0)
    first_pc = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
    return {
        "geodesic_spearman": float(spearman_rows(latent, path).mean()),
        "cross_room_spearman": float(np.mean(cross)),
        "euclidean_spearman": float(spearman_rows(latent, straight).mean()),
        "room_pc_corr": float(abs(np.corrcoef(first_pc, room)[0, 1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_latent_arguments(parser)
    parser.add_argument("--layouts", type=int, default=40, help="episode seeds first-seed.. whose layouts are used")
    parser.add_argument("--first-seed", type=int, default=2000)
    parser.add_argument("--sources", type=int, default=64, help="goal pixels per layout")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default=None, help="json path (default: <run dir>/latent_geometry.json)")
    args = parser.parse_args()
    check_latent_arguments(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = TwoRoomsAdapter()
    encoder = latent_encoder(args, env, args.checkpoint)
    rng = np.random.default_rng(0)
    per_layout = []
    for seed in range(args.first_seed, args.first_seed + args.layouts):
        env.reset(seed)  # SlowFeatures reads the layout from the environment
        layout = env.env.layout
        per_layout.append({"seed": seed, "wall_x": layout.wall_x, "door_y": layout.door_y})
        per_layout[-1] |= layout_geometry(encoder, layout, args.sources, rng)
    names = ["geodesic_spearman", "cross_room_spearman", "euclidean_spearman", "room_pc_corr"]
    summary = {name: float(np.mean([row[name] for row in per_layout])) for name in names}
    out = Path(args.out) if args.out else Path(args.checkpoint).parents[1] / "latent_geometry.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"checkpoint": args.checkpoint, "latent": args.latent, **summary, "per_layout": per_layout}, indent=2
        )
    )
    print(
        ", ".join(f"{name} {value:.3f}" for name, value in summary.items()) + f" ({args.layouts} layouts); wrote {out}"
    )


if __name__ == "__main__":
    main()

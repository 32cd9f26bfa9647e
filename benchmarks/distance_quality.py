"""Distance quality before any planner: plan with the TRUE Two Rooms dynamics on a world model's latent distance.

python benchmarks/distance_quality.py --checkpoint outputs/tworooms_wm/checkpoints/last.ckpt --episodes 40 \
    --first-seed 2000 [plan.yaml overrides, e.g. planner.horizon=90]

The world model's predictor is replaced by the simulator: a candidate action sequence moves the agent exactly (walls
included, `two_rooms.move_batch`) and each reached position is scored by the encoder's latent of that position's
render (looked up on a 0.5 px grid of renders of the episode's layout, interpolated bilinearly), with the energy,
planner and agent settings of `configs/plan.yaml` (the same composition as `launch/plan.py`). A latent whose distance
guides a planner to the goal scores high here; what the learned predictor then loses is the rest of the gap.
Prints the success rate with its 95% interval and writes `results.json` next to the checkpoint's run (or --out).

`--latent position` scores the agent's position itself (the red dot's centroid, in px) instead of a learned latent:
the ceiling a perfect position encoder reaches with these planner settings, i.e. what straight-line distance gives.
`--latent slow` scores the slowest features of a random walk in the episode's layout instead: the first
`--slow-features` non-constant eigenvectors of the free pixels' 4-neighbour graph Laplacian, each at unit variance
(what slow-feature analysis of random walks converges to; the wall makes them differ across it, unlike position), or
with `--commute` each scaled by 1/sqrt(its eigenvalue) (a commute-time embedding: the room feature dominates).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jepa.checkpoints import load_world_model
from jepa.envs.adapters import TwoRoomsAdapter
from jepa.envs.two_rooms import SIZE, Layout, move_batch, render_batch
from jepa.planning.evaluation import run_episodes, success_summary
from jepa.planning.mpc import MPCAgent

REPO = Path(__file__).resolve().parents[1]


def bilinear(grid: torch.Tensor, positions: np.ndarray, resolution: float) -> torch.Tensor:
    """(G, G, *Z) values on a grid of spacing `resolution` px (x along the 2nd axis), (S, 2) positions (px) -> (S, *Z)
    bilinearly interpolated values."""
    scaled = np.clip(positions / resolution, 0, grid.size(0) - 1.001)
    low = np.floor(scaled).astype(int)
    frac = torch.from_numpy(scaled - low).float()
    x0, y0, x1, y1 = low[:, 0], low[:, 1], low[:, 0] + 1, low[:, 1] + 1
    fx, fy = [f.view(-1, *([1] * (grid.dim() - 2))) for f in (frac[:, 0], frac[:, 1])]
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def free_pixel_graph(layout: Layout, diagonal: bool = False):
    """The free pixels of `layout` as a graph: (SIZE, SIZE) index of each free pixel (-1 on walls, row-major order)
    and the (N, N) sparse matrix of edge lengths between neighbours (right and down; with `diagonal` also the two
    diagonals, length sqrt 2), each edge stored once."""
    from scipy import sparse

    free = ~layout.wall_mask()
    index = -np.ones((SIZE, SIZE), dtype=int)
    index[free] = np.arange(free.sum())
    rows, cols, lengths = [], [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1))[: 4 if diagonal else 2]:
        a = index[: SIZE - dy, max(0, -dx) : SIZE - max(0, dx)]
        b = index[dy:, max(0, dx) : SIZE - max(0, -dx)]
        both = (a >= 0) & (b >= 0)
        rows.append(a[both]), cols.append(b[both]), lengths.append(np.full(both.sum(), np.hypot(dx, dy)))
    n = int(free.sum())
    edges = (np.concatenate(lengths), (np.concatenate(rows), np.concatenate(cols)))
    return index, sparse.coo_matrix(edges, shape=(n, n)).tocsr()


class DotPosition:
    """A stand-in encoder that reads the agent's position from the image: the centroid of red minus blue, in px.

    `encode`: (B, T, H, W, C) uint8 renders -> (B, T, 2) (x, y) positions (walls have more blue than red, the dot more
    red than blue, so only the dot counts).
    """

    def encode(self, observations: torch.Tensor) -> torch.Tensor:
        red = (observations[..., 0].double() - observations[..., 2].double()).clamp_min(0)
        axis = torch.arange(red.size(-1), dtype=torch.float64)
        mass = red.sum(dim=(-2, -1)).clamp_min(1e-9)
        x = (red * axis).sum(dim=(-2, -1)) / mass
        y = (red * axis[:, None]).sum(dim=(-2, -1)) / mass
        return torch.stack([x, y], dim=-1).float()


class SlowFeatures(DotPosition):
    """A stand-in encoder: the Laplacian eigenmap of the current layout's free pixels at the dot's position.

    `encode`: (B, T, H, W, C) uint8 renders -> (B, T, K) the K slowest non-constant eigenvectors (unit variance over
    the free pixels) at the dot's centroid, interpolated bilinearly; wall pixels take their nearest free pixel's value.
    """

    def __init__(self, adapter: TwoRoomsAdapter, features: int, commute: bool = False) -> None:
        self.adapter, self.features, self.commute = adapter, features, commute
        self._maps: dict[Layout, torch.Tensor] = {}

    def feature_map(self, layout: Layout) -> torch.Tensor:
        """(SIZE, SIZE, K) features of every pixel of `layout`."""
        if layout not in self._maps:
            from scipy import ndimage, sparse
            from scipy.sparse.linalg import eigsh

            free = ~layout.wall_mask()
            index, adjacency = free_pixel_graph(layout)
            adjacency = (adjacency > 0).astype(float)  # 4 neighbours, unit weights
            adjacency = (adjacency + adjacency.T).tocsr()
            laplacian = sparse.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency
            values, vectors = eigsh(laplacian, k=self.features + 1, sigma=-1e-3, which="LM")
            order = np.argsort(values)  # the constant vector (eigenvalue 0) first, then the slowest
            values, vectors = values[order], vectors[:, order]
            vectors = vectors[:, 1:] / vectors[:, 1:].std(axis=0)
            if self.commute:  # feature k / sqrt(eigenvalue k): distances are commute times (the slowest dominate)
                vectors = vectors * (values[1] / values[1:]) ** 0.5
            nearest = ndimage.distance_transform_edt(~free, return_distances=False, return_indices=True)
            features = vectors[index[nearest[0], nearest[1]]]  # (SIZE, SIZE, K)
            self._maps[layout] = torch.from_numpy(features).float()
        return self._maps[layout]

    def encode(self, observations: torch.Tensor) -> torch.Tensor:
        positions = super().encode(observations).double().numpy()
        grid = self.feature_map(self.adapter.env.layout)
        return bilinear(grid, positions.reshape(-1, 2), resolution=1.0).unflatten(0, positions.shape[:-1])


class TwoRoomsTrueDynamics:
    """The Two Rooms simulator behind the world-model seam: `encode` is the learned encoder's; `rollout` moves the
    true position (the `states` the agent passes) through the episode's layout and returns the encoder's latents of
    the reached positions.

    Args:
        world_model: the learned model whose encoder defines the latent (and its distance).
        adapter: the environment (its current layout).
        resolution: spacing of the grid of encoded renders, px.
    """

    def __init__(self, world_model, adapter: TwoRoomsAdapter, resolution: float = 0.5) -> None:
        self.world_model, self.adapter, self.resolution = world_model, adapter, resolution
        self.action_dim = 2
        self._grids: dict[Layout, torch.Tensor] = {}

    def encode(self, observations: torch.Tensor) -> torch.Tensor:
        return self.world_model.encode(observations)

    @torch.no_grad()
    def grid(self, layout: Layout) -> torch.Tensor:
        """(G, G, *Z) latents of the agent rendered at every grid point (x along the 2nd axis)."""
        if layout not in self._grids:
            axis = np.arange(0, SIZE, self.resolution)
            yy, xx = np.meshgrid(axis, axis, indexing="ij")
            points = np.stack([xx, yy], axis=-1).reshape(-1, 2)
            latents = []
            for chunk in np.array_split(points, max(1, len(points) // 512)):
                frames = render_batch(np.array([layout.wall_x]), np.array([layout.door_y]), chunk[None])[0]
                latents.append(self.world_model.encode(torch.from_numpy(frames)[:, None])[:, 0])
            self._grids = {layout: torch.cat(latents).unflatten(0, (len(axis), len(axis)))}
        return self._grids[layout]

    def lookup(self, grid: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
        """(S, 2) positions (px) -> (S, *Z) bilinearly interpolated latents."""
        return bilinear(grid, positions, self.resolution)

    @torch.no_grad()
    def rollout(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None
    ) -> torch.Tensor:
        if states is None:
            raise ValueError("true-dynamics planning needs the agent's position: set agent.use_states=true")
        layout = self.adapter.env.layout
        grid = self.grid(layout)
        S, L = actions.shape[:2]
        wall, door = np.full(S, layout.wall_x), np.full(S, layout.door_y)
        pos = states[:, -1].double().cpu().numpy()
        steps = actions.double().cpu().numpy()
        reached = []
        for t in range(L):
            pos = move_batch(wall, door, pos, steps[:, t])
            reached.append(self.lookup(grid, pos))
        return torch.stack(reached, dim=1).to(latents.device)


def add_latent_arguments(parser: argparse.ArgumentParser) -> None:
    """The latent-choosing flags that this script and `latent_geometry.py` share."""
    parser.add_argument("--checkpoint", default=None, help="the world model whose latent is scored")
    parser.add_argument(
        "--latent",
        choices=["model", "position", "slow"],
        default="model",
        help="model: the checkpoint's encoder; position: the dot's position (the straight-line ceiling); slow: the "
        "layout's slowest random-walk features (position and slow need no checkpoint)",
    )
    parser.add_argument("--slow-features", type=int, default=8, help="eigenvectors of --latent slow")
    parser.add_argument(
        "--commute",
        action="store_true",
        help="--latent slow: scale each by 1/sqrt(eigenvalue) (commute-time distance)",
    )


def check_latent_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A checkpoint goes with `--latent model` only, and a stand-in latent needs `--out` (it has no run folder)."""
    if (args.latent == "model") != (args.checkpoint is not None):
        parser.error("pass --checkpoint with --latent model (the default), and none with --latent position or slow")
    if args.latent != "model" and args.out is None:
        parser.error(f"--latent {args.latent} has no run folder to write to: pass --out")


def latent_encoder(args: argparse.Namespace, env: TwoRoomsAdapter, checkpoint: str | None):
    """The encoder that `add_latent_arguments`' flags name: a stand-in, or the checkpoint's world model (frozen, eval)."""
    if args.latent == "position":
        return DotPosition()
    if args.latent == "slow":
        return SlowFeatures(env, args.slow_features, args.commute)
    return load_world_model(checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_latent_arguments(parser)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=2000)
    parser.add_argument("--out", default=None, help="results.json path (default: <run dir>/distance_quality.json)")
    parser.add_argument("overrides", nargs="*", help="configs/plan.yaml overrides (planner, energy, agent, env)")
    args = parser.parse_args()
    check_latent_arguments(parser, args)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        checkpoint = [f"checkpoint={args.checkpoint}"] if args.checkpoint else []
        cfg = compose("plan", overrides=[*checkpoint, *args.overrides])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = instantiate(cfg.env)
    encoder = latent_encoder(args, env, cfg.checkpoint)
    model = TwoRoomsTrueDynamics(encoder, env)
    planner = instantiate(cfg.planner, _convert_="all")
    energy = instantiate(cfg.energy, _convert_="all")
    agent_cfg = {**OmegaConf.to_container(cfg.agent), "use_states": True}
    agent = MPCAgent(model, planner, energy, **agent_cfg)

    def progress(seed, result, rows):
        print(
            f"seed {seed}: {'success' if result.success else 'miss'} at {result.final_distance:.1f} px "
            f"({sum(r['success'] for r in rows)}/{len(rows)})",
            file=sys.stderr,
            flush=True,
        )

    rows = run_episodes(
        agent, env, range(args.first_seed, args.first_seed + args.episodes), cfg.max_env_steps, on_episode=progress
    )
    summary = {
        "checkpoint": args.checkpoint,
        "latent": args.latent
        if args.latent != "slow"
        else f"slow ({args.slow_features} features{', commute' * args.commute})",
        "overrides": args.overrides,
        **success_summary(rows),
        "per_episode": rows,
    }
    out = Path(args.out) if args.out else Path(args.checkpoint).parents[1] / "distance_quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    low, high = summary["success_interval_95"]
    print(
        f"true dynamics on the latent distance: {summary['successes']}/{summary['episodes']} "
        f"({summary['success_rate']:.0%}, 95% {low:.0%}-{high:.0%}); wrote {out}"
    )


if __name__ == "__main__":
    main()

"""Loss functions (pure, shape-documented): V-JEPA 2's masked L1, V-JEPA 2.1's dense loss, the regularisers of
jointly trained world models (variance, covariance, time similarity, trajectory variance, temporal contrast,
SIGReg), and the slow-feature loss of the planning-energy head.

V-JEPA 2.1 (vjepa2 `app/vjepa_2_1/train.py`) adds to the masked-token L1 a loss on the visible (context) tokens:

    loss = L1(z_pred, z_tgt[masked]) + lambda(step) * mean(|z_ctx_pred - z_tgt[context]| / d)

with targets re-normalised per level (`layer_norm_levels`) and d = sqrt(smallest grid distance from the context token
to a masked token) (`context_distances`), so visible tokens next to the hole weigh most. lambda(step) is
`ContextLossRamp`: 0, then a linear ramp, then constant, with the phases given as fractions of the step budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def layer_norm_targets(h: torch.Tensor) -> torch.Tensor:
    """Target features normalised per token without affine parameters, as V-JEPA 2 (`F.layer_norm`, eps 1e-5)."""
    return F.layer_norm(h, (h.size(-1),))


def layer_norm_levels(h: torch.Tensor, num_levels: int) -> torch.Tensor:
    """(B, N, L*D) concatenated levels -> the same with each D-wide level layer-normed alone (no affine, eps 1e-5).

    The V-JEPA 2.1 targets (vjepa2 `app/vjepa_2_1/train.py::forward_target`); one level is `layer_norm_targets`.
    """
    if num_levels == 1:
        return layer_norm_targets(h)
    levels = h.unflatten(-1, (num_levels, -1))  # (B, N, L, D)
    return F.layer_norm(levels, (levels.size(-1),)).flatten(-2)


def jepa_l1_loss(z_pred: torch.Tensor, z_tgt: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between predicted (B, K, D) and target (B, K, D) features (vjepa2 `loss_exp=1`)."""
    return (z_pred - z_tgt).abs().mean()


def jepa_l2_loss(z_pred: torch.Tensor, z_tgt: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element (an alternative to `jepa_l1_loss` for sparse latent changes)."""
    return (z_pred - z_tgt).square().mean()


def variance_hinge(z: torch.Tensor, target: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance term: mean over features of relu(target - std), std over the N samples of (N, D) `z`.

    Zero when every feature spreads over the batch; it rises towards `target` as the representation collapses, so it
    also reads as a collapse detector.
    """
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(target - std).mean()


def covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term: mean squared off-diagonal covariance of (N, D) `z` (features decorrelated)."""
    N, D = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (N - 1)
    return (cov.square().sum() - cov.diagonal().square().sum()) / (D * (D - 1))


def temporal_similarity(z: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of consecutive latents of (B, T, ...) `z`, over every element (eb_jepa's
    `TemporalSimilarityLoss`): a latent that moves little per step, so distances follow paths."""
    return (z[:, 1:] - z[:, :-1]).square().mean()


def trajectory_variance_hinge(z: torch.Tensor, target: float | torch.Tensor = 0.5, eps: float = 1e-4) -> torch.Tensor:
    """mean over clips and features of relu(target - std over time) for (B, T, D) `z` (`target`: a number, or (D,)
    one per feature).

    Slow-feature analysis asks for unit variance along each trajectory, where VICReg asks for it across the batch.
    Where each clip has its own scene (a new wall per clip), the batch variance is met by encoding the scene alone,
    which stays put within a clip; this term asks that features also change along the clip, i.e. follow what the
    agent does. Without it the encoder first learns the walls and only slowly, if at all, the agent (BENCHMARKS.md).
    """
    std = torch.sqrt(z.var(dim=1) + eps)  # (B, D)
    return F.relu(target - std).mean()


def pairwise_squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of (G, M, D) `a` and (G, N, D) `b`: (G, M, N), through a matmul (no
    (M, N, D) tensor; rounding may leave a zero distance slightly negative)."""
    return a.square().sum(-1)[:, :, None] + b.square().sum(-1)[:, None, :] - 2 * a @ b.transpose(1, 2)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Euclidean distances (G, M, N) of `pairwise_squared_distances`; `eps` under the root keeps the gradient finite
    at zero distance."""
    return torch.sqrt(pairwise_squared_distances(a, b).clamp_min(0) + eps)


def scene_frames(z: torch.Tensor, groups: int, loss: str) -> torch.Tensor:
    """(B, T, D) `z` as (B / groups, groups * T, D): every frame of each group of `groups` consecutive clips (clips
    sharing a scene), clip by clip; a clear error naming `loss` when the groups do not divide the batch."""
    B, T, D = z.shape
    if B % groups:
        raise ValueError(
            f"{loss}: {groups} clips per group do not divide the batch of {B} clips: make data.batch_size a multiple "
            "of objective.scene_clips"
        )
    return z.reshape(B // groups, groups * T, D)


def temporal_contrastive(
    z: torch.Tensor, offsets: tuple[int, ...] = (1, 2, 4, 8), temperature: float = 0.1, groups: int = 1
) -> torch.Tensor:
    """InfoNCE over time with a distance critic: from each frame z[b, t] of (B, T, D) `z`, the frame `offset` steps
    later in the same clip must be nearer (mean squared difference, over `temperature`) than every other frame of
    the clip's group (`groups` consecutive clips sharing a scene; the anchor itself left out). Averaged over anchors
    and `offsets`.

    Its optimum makes -distance a log density ratio of reaching one frame from another in `offset` steps (contrastive
    RL): latent distances grow with the time a random walk needs between two states, but only within the reach of
    the largest offset; states farther apart (across a wall that a short walk seldom crosses) are all "unreachable"
    alike. On Two Rooms it ordered each room better and the other room no better (docs/findings.md).
    """
    B, T, D = z.shape
    frames = scene_frames(z, groups, "temporal_contrastive")  # every frame of a group, clip by clip
    if not offsets or min(offsets) < 1 or max(offsets) >= T:
        raise ValueError(
            f"temporal_contrastive offsets must lie in 1..{T - 1} for clips of {T} frames, got {offsets}: change "
            "model.objective.temporal_contrastive_offsets or data.source.frames"
        )
    squared = pairwise_squared_distances(frames, frames)  # no sqrt: no NaN at 0
    logits = -squared / (D * temperature)  # (G, groups*T, groups*T)
    eye = torch.eye(groups * T, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    index = torch.arange(groups * T, device=z.device).view(groups, T)
    losses = []
    for offset in offsets:
        anchors, positives = index[:, :-offset].reshape(-1), index[:, offset:].reshape(-1)
        chosen = logits[:, anchors]  # (G, A, groups*T)
        losses.append(F.cross_entropy(chosen.flatten(0, 1), positives.repeat(len(frames))))
    return torch.stack(losses).mean()


def pair_spread(z: torch.Tensor, groups: int = 1, margin: float = 40.0) -> torch.Tensor:
    """Mean over every pair of frames within each group of `groups` consecutive clips of (B, T, D) `z` (clips sharing
    a scene) of softplus(margin - ||z_i - z_j||): pushes a scene's frames apart, each pair until about `margin`.

    With `step_excess` bounding the distance one step may cover, this is quasimetric RL's objective (Wang et al.
    2023, QRL): the largest distances whose every step is at most the bound are shortest-path lengths, so at the
    optimum two states a wall separates are as far apart as the walk round it, beyond any clip's reach. Spreading
    distances rather than squared distances (a variance) is what makes that optimum a path length: maximising a
    variance under a quadratic step penalty gives the slowest features (a Laplacian eigenmap). Reaching the optimum is
    another matter: on Two Rooms a CNN trained 2000 steps with it learned an exact straight-line distance first and
    the way round the wall only slowly (docs/findings.md).
    """
    frames = scene_frames(z, groups, "pair_spread")
    n = frames.size(1)
    distance = pairwise_distances(frames, frames)  # (G, n, n)
    pairs = ~torch.eye(n, dtype=torch.bool, device=z.device)
    return F.softplus(margin - distance[:, pairs]).mean()


def step_excess(z: torch.Tensor, limit: float = 1.0) -> torch.Tensor:
    """Mean over consecutive frames of (B, T, D) `z` of relu(||z_t+1 - z_t|| / limit - 1)^2: zero while no step of a
    clip moves the latent farther than `limit` (the unit of `pair_spread`'s path lengths), quadratic beyond."""
    if limit <= 0:
        raise ValueError(f"step_excess: the step limit must be > 0, got {limit}")
    step = torch.sqrt((z[:, 1:] - z[:, :-1]).square().sum(dim=-1) + 1e-6)
    return F.relu(step / limit - 1).square().mean()


def temporal_distance_td(
    z: torch.Tensor,
    groups: int = 1,
    discount: float = 0.98,
    expectile: float = 0.9,
    unit: float = 1.0,
    costs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Temporal-difference learning of latent distance as the time to reach a goal (HILP, Park et al. 2024): for
    each step s -> s' of a clip of (B, T, D) `z` and each frame g of its group (`groups` consecutive clips sharing a
    scene), d(s, g) = ||z_s - z_g|| / `unit` is regressed on c + discount * d(s', g) (the target detached; with
    g = s' the target is c), an expectile regression of the value -d. c is each step's cost, (B, T - 1) `costs`:
    1 per step by default; where steps differ in length (a walk's speed varies), a cost that follows the step (the
    action's norm) keeps two frames a short step apart near in the latent, where counting steps sets every two distinct
    frames at least one unit apart.

    The fixed point is the discounted number of steps, (1 - discount^n) / (1 - discount), that the data's walks need
    from s to g: `expectile` 0.5 gives the walk's own expected time, towards 1 the shortest path. Because the target
    bootstraps from the next state's distance, reach compounds over steps: at the fixed point two states a wall
    separates are as far apart as the way round it, although no clip goes round (on Two Rooms, 2000 steps got part of
    the way there, docs/findings.md). Mean over steps and goals (the step's own start left out).
    """
    B, T, D = z.shape
    frames = scene_frames(z, groups, "temporal_distance_td")  # (G, n, D)
    if not 0 < discount < 1 or not 0 < expectile < 1:
        raise ValueError(
            f"temporal_distance_td: discount and expectile must lie in (0, 1), got {discount}, {expectile}"
        )
    clips = z.reshape(B // groups, groups, T, D)
    starts, nexts = clips[:, :, :-1].flatten(1, 2), clips[:, :, 1:].flatten(1, 2)  # (G, m, D), m = groups * (T - 1)
    d = pairwise_distances(starts, frames) / unit  # (G, m, n)
    with torch.no_grad():
        cost = torch.ones(B, T - 1, device=z.device, dtype=z.dtype) if costs is None else costs.to(z.dtype)
        cost = cost.reshape(B // groups, -1, 1)  # (G, m, 1), in the order of `starts`
        target = cost + discount * pairwise_distances(nexts, frames) / unit
        index = torch.arange(groups * T, device=z.device).view(groups, T)
        start_index, next_index = index[:, :-1].reshape(-1), index[:, 1:].reshape(-1)
        goal = torch.arange(groups * T, device=z.device)
        target = torch.where(goal[None] == next_index[:, None], cost.expand_as(target), target)  # reached: one step
        keep = (goal[None] != start_index[:, None]).to(z.dtype)  # d(s, s) = 0 by construction
    residual = target - d  # > 0: d below its target
    weight = torch.where(residual > 0, 1 - expectile, expectile)  # value -d: its upper expectile pulls d down
    return (weight * residual.square() * keep).sum() / (keep.sum() * len(frames))


def epps_pulley(x: torch.Tensor, t_max: float = 3.0, points: int = 17) -> torch.Tensor:
    """Epps-Pulley statistic of each column of (N, M) `x` against N(0, 1): the integral over t in [-t_max, t_max] of
    exp(-t^2 / 2) |mean exp(i t x) - exp(-t^2 / 2)|^2 (trapezoid rule), (M,)."""
    t = torch.linspace(-t_max, t_max, points, device=x.device, dtype=x.dtype)
    gauss = torch.exp(-0.5 * t.square())
    xt = x.unsqueeze(-1) * t  # (N, M, P)
    real, imag = torch.cos(xt).mean(0), torch.sin(xt).mean(0)  # the empirical characteristic function, (M, P)
    err = gauss * ((real - gauss).square() + imag.square())
    return torch.trapezoid(err, t, dim=-1)


def sigreg(z: torch.Tensor, slices: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """SIGReg (LeJEPA): the Epps-Pulley distance of `slices` random 1-D projections of (N, D) `z` from N(0, 1),
    averaged. Pushes the embedding towards an isotropic Gaussian: one term in place of variance + covariance."""
    directions = torch.randn(z.size(-1), slices, generator=generator, dtype=z.dtype).to(z.device)
    directions = directions / directions.norm(dim=0, keepdim=True)
    return epps_pulley(z @ directions).mean()


def slow_feature_loss(
    h: torch.Tensor,
    sim_coeff: float = 12.0,
    std_coeff: float = 16.0,
    cov_coeff: float = 8.0,
    std_target: float = 1.0,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Time similarity plus VICReg variance-covariance on trajectory embeddings (eb_jepa's planning regularisers).

    loss = sim_coeff * mean_t ||h_t+1 - h_t||^2 + std_coeff * mean_j relu(std_target - std_j) + cov_coeff * mean_{i!=j}
    C_ij^2, with std and covariance C over every (sample, time) embedding of the batch. The first term pulls
    consecutive frames together, the other two keep the embeddings spread and decorrelated (no collapse).
    Defaults are eb_jepa's `ac_video_jepa` coefficients (12, 16, 8).

    Args:
        h: (B, T, K) embeddings of B trajectories of T consecutive frames (T >= 2).

    Returns:
        The loss and its parts `{"sim", "std", "cov"}` (unweighted).
    """
    if h.dim() != 3 or h.size(1) < 2:
        raise ValueError(f"slow_feature_loss needs (B, T >= 2, K) embeddings, got {tuple(h.shape)}")
    sim = temporal_similarity(h) * h.size(-1)  # squared distance summed over the K features
    flat = h.flatten(0, 1)
    std_loss = variance_hinge(flat, std_target, eps)
    cov_loss = covariance_penalty(flat)
    loss = sim_coeff * sim + std_coeff * std_loss + cov_coeff * cov_loss
    return loss, {"sim": sim, "std": std_loss, "cov": cov_loss}


def weighted_l1_loss(z_pred: torch.Tensor, z_tgt: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean over tokens and channels of |z_pred - z_tgt| * weight of the token.

    Args:
        z_pred, z_tgt: (B, K, D).
        weights: (B, K) per-token weights (not normalised, as in the reference); None = 1.
    """
    err = (z_pred - z_tgt).abs()
    if weights is not None:
        err = err * weights.unsqueeze(-1).to(err.dtype)
    return err.mean()


def _grid_positions(ids: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """(..., N) flat indices of a row-major (T', H', W') grid -> (..., N, 3) float (t, h, w)."""
    t, rem = ids.div(grid_h * grid_w, rounding_mode="floor"), ids.remainder(grid_h * grid_w)
    return torch.stack((t, rem.div(grid_w, rounding_mode="floor"), rem.remainder(grid_w)), dim=-1).float()


def context_distances(
    ctx_idx: torch.Tensor, tgt_idx: torch.Tensor, grid: tuple[int, int, int], offset_by_resolution: bool = False
) -> torch.Tensor:
    """d for every context token: sqrt of the smallest Euclidean distance between its (t, h, w) grid position and
    a target (masked) token's (vjepa2 `app/vjepa_2_1/models/utils/masks_dist.py::compute_mask_distance`).

    Args:
        ctx_idx: (B, Kc) flat token indices of the context.
        tgt_idx: (B, Kt) flat token indices of the targets (disjoint from the context, so d >= 1).
        grid: token grid (T', H', W'); t is the latent-frame (tubelet) index.
        offset_by_resolution: the reference's `offset_context_loss`: divide the distance by H' // 16 first, so that
            distances are in units of a 256 px grid (needs H' >= 16).

    Returns:
        (B, Kc) float32 d; the context loss weights each token by 1 / d.
    """
    _, gh, gw = grid
    p_ctx = _grid_positions(ctx_idx, gh, gw)  # (B, Kc, 3)
    p_tgt = _grid_positions(tgt_idx, gh, gw)  # (B, Kt, 3)
    dist = torch.cdist(p_ctx, p_tgt).amin(dim=-1)  # (B, Kc)
    if offset_by_resolution:
        if gh < 16:
            raise ValueError(f"offset_by_resolution needs a grid of at least 16 rows (256 px at patch 16), got {gh}")
        dist = dist / (gh // 16)
    return dist.sqrt()


@dataclass(frozen=True)
class ContextLossRamp:
    """lambda(step) of the context loss: 0 before `start_fraction * total_steps`, linear up to `value` at
    `end_fraction * total_steps`, then constant (vjepa2 `Lambda_LinearWarmupHold`).

    The reference hard-codes steps 15k -> 30k of its 300k-step pretraining (1000 epochs x 300 iterations), i.e.
    fractions 0.05 -> 0.10, the defaults here; as fractions the ramp keeps its shape in a short fine-tune instead of
    never switching on. `end_fraction == start_fraction` is a step at that point; 0, 0 = constant from step 0.
    """

    value: float
    total_steps: int
    start_fraction: float = 0.05
    end_fraction: float = 0.10

    def __post_init__(self) -> None:
        if not 0.0 <= self.start_fraction <= self.end_fraction <= 1.0:
            raise ValueError(
                f"context loss ramp needs 0 <= start_fraction <= end_fraction <= 1, got "
                f"{self.start_fraction}, {self.end_fraction}"
            )

    def __call__(self, step: int) -> float:
        start = self.start_fraction * self.total_steps
        end = self.end_fraction * self.total_steps
        if step < start:
            return 0.0
        if step >= end:
            return self.value
        return self.value * (step - start) / (end - start)

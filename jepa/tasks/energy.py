"""Training the planning-energy head (`jepa.models.energy_head.LatentEnergyHead`) on a frozen encoder's latents.

The encoder is frozen, so every frame's latents are computed once (`collect_latents`) and the small head trains on
that cache (`train_energy_head`): minutes on a CPU where re-encoding the windows at every step would take an hour.
Each step draws trajectories from the cache, maps every frame through the head and applies
`jepa.losses.slow_feature_loss`: consecutive frames close, the batch spread out. The head learns which states are
near each other from the trajectories alone. The encoder must be the one the AC world model was trained on, since
the planner applies the head to that model's predicted latents.

Those predictions are not encoded frames: where the world model is unsure (a push into a wall) it predicts a blend,
and a head that has seen only encoded frames can score the blend as progress. With `prediction_coeff` > 0 the head
also sees the world model's own rollouts of the cached windows (`collect_predictions`, the windows' true actions)
and pulls each predicted latent's embedding onto the embedding of the frame it predicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from jepa.losses import slow_feature_loss
from jepa.models.ac_predictor import frame_latents


class CachedWindows(NamedTuple):
    """Trajectory windows cached for the head: `latents` (W, T, N, D), `scenes` (W,) (-1 where unknown), and, where
    the batches have them, `actions` (W, T-1, A) and `states` (W, T, S) (else None)."""

    latents: torch.Tensor
    scenes: torch.Tensor
    actions: torch.Tensor | None
    states: torch.Tensor | None


@torch.no_grad()
def collect_latents(encoder: nn.Module, batches: Iterable[dict], num_windows: int, chunk: int = 256) -> CachedWindows:
    """Frame latents (and scene ids, actions, states) of the first `num_windows` trajectory windows of `batches`.

    Args:
        encoder: the frozen frame encoder.
        batches: dicts with `video` (B, C, T, H, W) and optionally `scene` (B,), `actions` (B, T-1, A) and `states`
            (B, T, S) (a `TrajectoryDataModule` loader).
        num_windows: windows to keep.
        chunk: frames encoded per forward pass.

    Returns:
        `CachedWindows`; its latents are layer-normed, as `ACWorldModel.encode` gives them.
    """
    kept: dict[str, list[torch.Tensor]] = {"video": [], "scene": [], "actions": [], "states": []}
    count = 0
    for batch in batches:
        size = batch["video"].size(0)
        kept["video"].append(batch["video"])
        kept["scene"].append(torch.as_tensor(batch.get("scene", torch.full((size,), -1))))
        for key in ("actions", "states"):
            if key in batch:
                kept[key].append(torch.as_tensor(batch[key], dtype=torch.float32))
        count += size
        if count >= num_windows:
            break
    video = torch.cat(kept["video"])[:num_windows]  # (W, C, T, H, W)
    per_pass = max(1, chunk // video.size(2))  # windows per encoder pass
    latents = torch.cat([frame_latents(encoder, video[i : i + per_pass]) for i in range(0, len(video), per_pass)])
    extra = {
        key: torch.cat(kept[key])[:num_windows] if len(kept[key]) == len(kept["video"]) else None
        for key in ("actions", "states")
    }
    return CachedWindows(latents, torch.cat(kept["scene"])[:num_windows], extra["actions"], extra["states"])


@torch.no_grad()
def collect_predictions(
    world_model: nn.Module, windows: CachedWindows, starts: Sequence[int], horizon: int, chunk: int = 64
) -> torch.Tensor:
    """The world model's `horizon`-step rollouts from frames `starts` of every cached window, with its true actions.

    Args:
        world_model: an `ACWorldModel` on the same encoder (its `rollout(latents, actions, states)`).
        windows: `collect_latents` output with actions and states.
        starts: frames rolled out from; start + horizon must stay within the window's T frames.
        horizon: predicted steps per start.
        chunk: rollouts per forward pass.

    Returns:
        (W, len(starts), horizon, N, D) predictions; [w, i, h] predicts `windows.latents[w, starts[i] + 1 + h]`.
    """
    if windows.actions is None or windows.states is None:
        raise ValueError("collect_predictions needs the windows' actions and states: batches without them were cached")
    W, T = windows.latents.shape[:2]
    if min(starts) < 0 or max(starts) + horizon > T - 1:
        raise ValueError(f"starts {list(starts)} + horizon {horizon} run past windows of {T} frames")
    per_start = []
    for start in starts:
        steps = []
        for i in range(0, W, chunk):
            latents = windows.latents[i : i + chunk, start : start + 1]
            actions = windows.actions[i : i + chunk, start : start + horizon]
            steps.append(world_model.rollout(latents, actions, windows.states[i : i + chunk, start : start + 1]))
        per_start.append(torch.cat(steps))
    return torch.stack(per_start, dim=1)


def train_energy_head(
    head: nn.Module,
    latents: torch.Tensor,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    sim_coeff: float = 12.0,
    std_coeff: float = 16.0,
    cov_coeff: float = 8.0,
    seed: int = 0,
    log_every: int = 100,
    scenes: torch.Tensor | None = None,
    predictions: torch.Tensor | None = None,
    prediction_starts: Sequence[int] = (),
    prediction_coeff: float = 0.0,
) -> list[dict[str, float]]:
    """Trains `head` in place on cached trajectory latents with `slow_feature_loss` (AdamW, cosine LR decay).

    Args:
        head: maps (..., N, D) latents to (..., K).
        latents: (W, T, N, D) latents of W trajectory windows of T consecutive frames.
        steps, batch_size, lr, weight_decay: optimisation (batch_size windows per step, all T frames each).
        sim_coeff, std_coeff, cov_coeff: the loss weights.
        seed: draws the batches.
        log_every: steps between log entries.
        scenes: (W,) scene id of each window: each batch then comes from one scene (drawn uniformly). Needed when
            the scenes differ (Two Rooms' random walls): in a batch of mixed scenes the variance term is met by
            encoding the scene alone, constant along each trajectory, and the head learns nothing about the agent.
        predictions: (W, P, H, N, D) world-model rollouts of the windows (`collect_predictions` from frames
            `prediction_starts`): adds `prediction_coeff` times the mean squared distance between each prediction's
            embedding and that of the frame it predicts (both receive gradients; the log's `pred`).

    Returns:
        Log entries `{"step", "loss", "sim", "std", "cov"}`.
    """
    if latents.dim() != 4 or latents.size(1) < 2:
        raise ValueError(f"train_energy_head needs (windows, T >= 2, N, D) latents, got {tuple(latents.shape)}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.01)
    head.train()
    log = []
    members = None if scenes is None else [torch.nonzero(scenes == s).flatten() for s in scenes.unique()]
    for step in range(steps):
        if members is None:
            index = torch.randint(0, latents.size(0), (batch_size,), generator=generator)
        else:
            scene = members[int(torch.randint(0, len(members), (1,), generator=generator))]
            index = scene[torch.randint(0, len(scene), (batch_size,), generator=generator)]
        embeddings = head(latents[index])  # (B, T, K)
        loss, parts = slow_feature_loss(embeddings, sim_coeff, std_coeff, cov_coeff)
        if predictions is not None and prediction_coeff:
            predicted = head(predictions[index])  # (B, P, H, K)
            targets = torch.stack([embeddings[:, s + 1 : s + 1 + predicted.size(2)] for s in prediction_starts], 1)
            parts["pred"] = (predicted - targets).square().sum(-1).mean()
            loss = loss + prediction_coeff * parts["pred"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step == steps - 1:
            log.append({"step": step, "loss": loss.item(), **{k: v.item() for k, v in parts.items()}})
    head.eval()
    return log

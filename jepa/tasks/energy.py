"""Training the planning-energy head (`jepa.models.energy_head.LatentEnergyHead`) on a frozen encoder's latents.

The encoder is frozen, so every frame's latents are computed once (`collect_latents`) and the small head trains on
that cache (`train_energy_head`): minutes on a CPU where re-encoding the windows at every step would take an hour.
Each step draws trajectories from the cache, maps every frame through the head and applies
`jepa.losses.slow_feature_loss`: consecutive frames close, the batch spread out. Actions and states are not used;
the head learns which states are near each other from the trajectories alone. The encoder must be the one the AC
world model was trained on, since the planner applies the head to that model's predicted latents.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from jepa.losses import slow_feature_loss
from jepa.models.ac_predictor import frame_latents


@torch.no_grad()
def collect_latents(
    encoder: nn.Module, batches: Iterable[dict], num_windows: int, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame latents (and scene ids) of the first `num_windows` trajectory windows of `batches`.

    Args:
        encoder: the frozen frame encoder.
        batches: dicts with `video` (B, C, T, H, W) and optionally `scene` (B,) (a `TrajectoryDataModule` loader).
        num_windows: windows to keep.
        chunk: frames encoded per forward pass.

    Returns:
        (num_windows, T, N, D) layer-normed latents, as `ACWorldModel.encode` gives them, and (num_windows,) scene
        ids (-1 where the batches have none).
    """
    videos, scenes, count = [], [], 0
    for batch in batches:
        videos.append(batch["video"])
        scenes.append(torch.as_tensor(batch.get("scene", torch.full((batch["video"].size(0),), -1))))
        count += batch["video"].size(0)
        if count >= num_windows:
            break
    video = torch.cat(videos)[:num_windows]  # (W, C, T, H, W)
    per_pass = max(1, chunk // video.size(2))  # windows per encoder pass
    latents = torch.cat([frame_latents(encoder, video[i : i + per_pass]) for i in range(0, len(video), per_pass)])
    return latents, torch.cat(scenes)[:num_windows]


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
        loss, parts = slow_feature_loss(head(latents[index]), sim_coeff, std_coeff, cov_coeff)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step == steps - 1:
            log.append({"step": step, "loss": loss.item(), **{k: v.item() for k, v in parts.items()}})
    head.eval()
    return log

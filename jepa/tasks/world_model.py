"""A JEPA world model trained end to end: encoder and predictor learn together from pixels and actions.

The latent is shaped for planning: no stop-gradient (the encoder learns what the predictor can predict), and
regularisers keep it from collapsing and make its distances follow the agent's paths (eb_jepa `ac_video_jepa`, PLDM,
LeWM):

    loss = prediction * MSE(rollout of `rollout_steps` from frame 0, latents 1..L)
         + teacher_forcing * MSE(one-step predictions, latents 1..T-1)
         + variance * variance_hinge + covariance * covariance_penalty         (VICReg, over every frame of the batch)
         + time_similarity * mean ||z_t+1 - z_t||^2                          (slow latents: distance ~ path length)
         + trajectory_variance * trajectory_variance_hinge                  (features change along each clip)
         + scene_variance * variance hinge over the frames of `scene_clips` clips sharing a scene (a layout):
           with time similarity, slow features of each scene's random walks, which a wall keeps apart across it
         + temporal_contrastive * InfoNCE: the frame `offset` steps later is the nearest of its scene's frames
           (latent distance grows with the time a walk needs between two states, within the offsets' reach)
         + pair_spread * mean softplus(margin - ||z_i - z_j||) over the frames of each scene, with
           step_excess * mean relu(||z_t+1 - z_t|| / step_limit - 1)^2: QRL's quasimetric objective, distances as
           large as steps of at most `step_limit` allow: at the optimum path lengths (round a wall, beyond a clip)
         + temporal_distance * expectile TD regression of ||z_s - z_g|| / step_limit on 1 + discount * the next
           state's distance to g, every frame g of the scene (HILP): its fixed point, the steps to reach g
           (a step costs 1, or ||a_t|| / temporal_distance_action_scale)
         + inverse_dynamics * MSE(IDM(z_t, z_t+1), a_t)                     (the latent keeps what the action did)
         + sigreg * SIGReg                                                  (LeJEPA: an alternative to var + cov)

Every weight is a config value (`WorldModelObjective`), a number or a schedule of the step (`jepa.optim`); 0 switches
a term off.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from jepa.checkpoints import load_encoder
from jepa.losses import (
    covariance_penalty,
    pair_spread,
    sigreg,
    step_excess,
    temporal_contrastive,
    temporal_distance_td,
    temporal_similarity,
    trajectory_variance_hinge,
    variance_hinge,
)
from jepa.models.world_model import InverseDynamics, JEPAWorldModel
from jepa.tasks.base import JEPATask, Schedule

Weight = float | Schedule
TERMS = (
    "prediction",
    "teacher_forcing",
    "variance",
    "covariance",
    "time_similarity",
    "trajectory_variance",
    "scene_variance",
    "temporal_contrastive",
    "pair_spread",
    "step_excess",
    "temporal_distance",
    "inverse_dynamics",
    "sigreg",
)


@dataclass(frozen=True)
class WorldModelObjective:
    """Weights and settings of the jointly trained world model's loss (see the module docstring).

    Each weight in `TERMS` is a number or a schedule `step -> weight` (e.g. `jepa.optim.PiecewiseLinear`: a term
    that only kick-starts training). Defaults are eb_jepa's coefficients (variance 16, covariance 8, time similarity
    12, inverse dynamics 1) with the trajectory-variance term off; the shipped Two Rooms recipe is
    `configs/model/world_model.yaml`.
    """

    rollout_steps: int = 8
    prediction: Weight = 1.0
    teacher_forcing: Weight = 0.0
    variance: Weight = 16.0
    variance_target: float = 1.0
    covariance: Weight = 8.0
    time_similarity: Weight = 12.0
    trajectory_variance: Weight = 0.0
    trajectory_variance_target: float = 0.3
    scene_variance: Weight = 0.0
    scene_variance_target: float = 1.0
    scene_variance_decay: float = 0.0
    scene_variance_exact: bool = False
    scene_clips: int = 1
    temporal_contrastive: Weight = 0.0
    temporal_contrastive_offsets: tuple[int, ...] = (1, 2, 4, 8)
    temporal_contrastive_temperature: float = 0.1
    pair_spread: Weight = 0.0
    pair_spread_margin: float = 40.0
    step_excess: Weight = 0.0
    step_limit: float = 1.0
    temporal_distance: Weight = 0.0
    temporal_distance_discount: float = 0.98
    temporal_distance_expectile: float = 0.9
    temporal_distance_action_scale: float | None = None
    inverse_dynamics: Weight = 1.0
    sigreg: Weight = 0.0
    sigreg_slices: int = 256

    def __post_init__(self) -> None:
        if self.rollout_steps < 1:
            raise ValueError(f"rollout_steps must be >= 1, got {self.rollout_steps}")
        if self.scene_clips < 1:
            raise ValueError(f"scene_clips must be >= 1, got {self.scene_clips}")
        if self.temporal_contrastive_temperature <= 0:
            raise ValueError(
                f"temporal_contrastive_temperature must be > 0, got {self.temporal_contrastive_temperature}"
            )
        if self.step_limit <= 0:
            raise ValueError(f"step_limit must be > 0, got {self.step_limit}")
        if self.temporal_distance_action_scale is not None and self.temporal_distance_action_scale <= 0:
            raise ValueError(
                f"temporal_distance_action_scale must be > 0 (or null), got {self.temporal_distance_action_scale}"
            )
        for name in ("temporal_distance_discount", "temporal_distance_expectile"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        object.__setattr__(self, "temporal_contrastive_offsets", tuple(self.temporal_contrastive_offsets))
        negative = {k: getattr(self, k) for k in TERMS if not callable(getattr(self, k)) and getattr(self, k) < 0}
        if negative:
            raise ValueError(f"world-model loss weights must be >= 0, got {negative}")

    def weights(self, step: int) -> dict[str, float]:
        """Every term's weight at `step`."""
        return {k: float(w(step)) if callable(w) else float(w) for k in TERMS for w in [getattr(self, k)]}

    def uses(self, term: str) -> bool:
        """Whether `term` ever has a non-zero weight (a schedule counts as used)."""
        weight = getattr(self, term)
        return callable(weight) or weight > 0


class JointWorldModelTask(JEPATask):
    """Trains a `JEPAWorldModel` (encoder + predictor) and an inverse-dynamics head on clips with actions.

    Batches are dicts with `frames` (B, T, H, W, C) uint8 (as the environment renders them) and `actions`
    (B, T - 1, A).

    Args:
        world_model: the model to train (its `encode` does the pixel preprocessing).
        objective: the loss weights.
        inverse_dynamics: the IDM head (needed when `objective.inverse_dynamics > 0`).
        ema_target: predict the latents of an EMA copy of the encoder (BYOL / V-JEPA style, momentum from
            `ema_schedule`) instead of the online encoder's own (eb_jepa: no EMA, no stop-gradient).
        encoder_checkpoint: a V-JEPA `.ckpt`/`.pt` whose (target) encoder fills `world_model.encoder.backbone` (a
            `PooledEncoder`, e.g. frozen with only its head trained); None = train from scratch.
        optimizer, lr_schedule, wd_schedule, ema_schedule: as `JEPATask`.
    """

    def __init__(
        self,
        world_model: JEPAWorldModel,
        optimizer: Callable,
        lr_schedule: Schedule,
        wd_schedule: Schedule,
        ema_schedule: Schedule,
        objective: WorldModelObjective | None = None,
        inverse_dynamics: InverseDynamics | None = None,
        ema_target: bool = False,
        encoder_checkpoint: str | None = None,
    ) -> None:
        super().__init__(optimizer, lr_schedule, wd_schedule, ema_schedule)
        self.world_model = world_model
        self.objective = objective or WorldModelObjective()
        if self.objective.uses("inverse_dynamics") and inverse_dynamics is None:
            raise ValueError("objective.inverse_dynamics > 0 needs an inverse_dynamics head (model.inverse_dynamics)")
        self.inverse_dynamics = inverse_dynamics
        self.target_encoder: nn.Module | None = None
        if ema_target:
            self.target_encoder = copy.deepcopy(world_model.encoder).requires_grad_(False)
            self.ema_pairs = [(self.target_encoder, world_model.encoder)]
        self.encoder_checkpoint = encoder_checkpoint
        self._encoder_loaded = encoder_checkpoint is None

    def configure_model(self) -> None:
        """Loads a pretrained backbone once (a resumed run restores the same weights from its own .ckpt)."""
        if self._encoder_loaded:
            return
        backbone = getattr(self.world_model.encoder, "backbone", None)
        if backbone is None:
            raise ValueError("model.encoder_checkpoint needs a PooledEncoder (an encoder with a `backbone`)")
        if not Path(self.encoder_checkpoint).is_file():
            raise FileNotFoundError(
                f"encoder checkpoint not found: {self.encoder_checkpoint}; pretrain one "
                "(`python launch/train.py +experiment=tworooms_vjepa`) or point model.encoder_checkpoint at a file"
            )
        load_encoder(self.encoder_checkpoint, encoder=backbone, freeze=self.world_model.encoder.freeze_backbone)
        if self.target_encoder is not None:
            self.target_encoder.load_state_dict(self.world_model.encoder.state_dict())
        self._encoder_loaded = True

    def module_kwargs(self) -> dict[str, dict]:
        kwargs = {"world_model": self.world_model.spec()}
        if self.inverse_dynamics is not None:
            kwargs["inverse_dynamics"] = self.inverse_dynamics.init_kwargs
        return kwargs

    def batch_clips(self, batch: dict) -> int:
        return batch["frames"].size(0)

    def targets(self, frames: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """What the predictor is trained to predict: the online latents themselves, or the EMA encoder's."""
        if self.target_encoder is None:
            return latents
        with torch.no_grad():
            return self.world_model.encode_with(self.target_encoder, frames)

    def losses(self, frames: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of the objective, unweighted: frames (B, T, H, W, C) uint8, actions (B, T - 1, A).

        A model whose latents see `context_frames` = k frames has T - k + 1 latents per clip, the first after frame
        k - 1: the actions before it are context, not predicted.
        """
        o = self.objective
        z = self.world_model.encode(frames)  # (B, T - k + 1, *S)
        actions = actions[:, self.world_model.context_frames - 1 :]
        target = self.targets(frames, z)
        steps = min(o.rollout_steps, z.size(1) - 1)
        rollout = self.world_model.rollout(z[:, :1], actions[:, :steps])
        terms = {"prediction": F.mse_loss(rollout, target[:, 1 : steps + 1])}
        with torch.no_grad():  # the "repeat the first latent" baseline of the same rollout: prediction must beat it
            terms["repeat_baseline"] = F.mse_loss(z[:, :1].expand_as(rollout), target[:, 1 : steps + 1])
        if o.uses("teacher_forcing"):
            terms["teacher_forcing"] = F.mse_loss(self.world_model.teacher_forced(z[:, :-1], actions), target[:, 1:])
        v = z if z.dim() == 3 else z.mean(dim=2)  # token latents: regularise their average, (B, T, D)
        flat = v.flatten(0, 1)
        if o.uses("variance"):
            terms["variance"] = variance_hinge(flat, o.variance_target)
        if o.uses("covariance"):
            terms["covariance"] = covariance_penalty(flat)
        if o.uses("time_similarity"):
            terms["time_similarity"] = temporal_similarity(z)
        if o.uses("trajectory_variance"):
            terms["trajectory_variance"] = trajectory_variance_hinge(v, o.trajectory_variance_target)
        if o.uses("scene_variance"):
            terms["scene_variance"] = self.scene_variance(v)
        if o.uses("temporal_contrastive"):
            terms["temporal_contrastive"] = temporal_contrastive(
                v, o.temporal_contrastive_offsets, o.temporal_contrastive_temperature, o.scene_clips
            )
        if o.uses("pair_spread"):
            terms["pair_spread"] = pair_spread(v, o.scene_clips, o.pair_spread_margin)
        if o.uses("step_excess"):
            terms["step_excess"] = step_excess(v, o.step_limit)
        if o.uses("temporal_distance"):
            scale = o.temporal_distance_action_scale  # None: every step costs 1; else ||a_t|| / scale
            costs = None if scale is None else actions.norm(dim=-1) / scale
            terms["temporal_distance"] = temporal_distance_td(
                v, o.scene_clips, o.temporal_distance_discount, o.temporal_distance_expectile, o.step_limit, costs
            )
        if o.uses("inverse_dynamics"):
            terms["inverse_dynamics"] = F.mse_loss(self.inverse_dynamics(v[:, :-1], v[:, 1:]), actions)
        if o.uses("sigreg"):
            generator = torch.Generator().manual_seed(self.global_step)  # the same slices again on a resume
            terms["sigreg"] = sigreg(flat, o.sigreg_slices, generator)
        with torch.no_grad():
            terms["latent_std"] = flat.std(dim=0).mean()  # falls towards 0 as the latent collapses
        return terms

    def scene_variance(self, v: torch.Tensor) -> torch.Tensor:
        """Variance term over every frame of each group of `objective.scene_clips` consecutive clips of (B, T, D) `v`
        (the data source puts clips of one scene next to each other: e.g. `TwoRoomsWalks(clips_per_layout=...)`).

        Feature d's target is `scene_variance_target * (d + 1) ** -scene_variance_decay`: with decay 0 every feature
        spreads alike (slow-feature analysis: the fast features then weigh as much in a distance as the slowest);
        with decay 1/2 the slowest features spread most, as in a commute-time embedding, where a wall between two
        points makes them far apart. A hinge only bounds the spread from below; with `scene_variance_exact` the term is
        the mean squared difference of each feature's spread from its target, so the spectrum is the target's.
        """
        B, T, D = v.shape
        k = self.objective.scene_clips
        if B % k:
            raise ValueError(
                f"objective.scene_clips={k} does not divide the batch of {B} clips: make data.batch_size a multiple "
                "of it (and give the data source the same number of clips per scene)"
            )
        rank = torch.arange(1, D + 1, device=v.device, dtype=v.dtype)
        target = self.objective.scene_variance_target * rank**-self.objective.scene_variance_decay
        grouped = v.reshape(B // k, k * T, D)
        if self.objective.scene_variance_exact:
            return (torch.sqrt(grouped.var(dim=1) + 1e-4) - target).square().mean()
        return trajectory_variance_hinge(grouped, target)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch["frames"], batch["actions"])
        weights = self.objective.weights(self.global_step)
        loss = sum(weights[name] * value for name, value in terms.items() if name in weights)
        logged = {f"train/{k}": v for k, v in terms.items()} | {"train/loss": loss}
        logged |= {f"weight/{k}": w for k, w in weights.items() if callable(getattr(self.objective, k))}
        self.log_dict(logged, on_step=True)
        self.log("loss", loss, prog_bar=True, logger=False)
        return loss


@torch.no_grad()
def rollout_baselines(
    world_model: JEPAWorldModel, frames: torch.Tensor, actions: torch.Tensor, horizon: int, seed: int = 0
) -> dict[str, list[float]]:
    """Offline check of a world model: latent error per rollout step against two baselines.

    From each clip's first frame the model rolls out `horizon` latents (a) with the clip's true actions, (b) with
    another clip's actions (a derangement of the batch), and (c) "repeat the first latent"; the error is the mean
    squared difference to the encoded true frames (the training loss), per step 1..horizon. A model worth planning
    with is below both baselines at every step; if it is not below (b), it ignores the actions.

    Args:
        world_model: the model (eval mode).
        frames: (B, T >= k - 1 + horizon + 1, H, W, C) uint8 clips (k: the model's `context_frames`); actions:
            (B, T - 1, A), the first k - 1 before the first latent.
        horizon: rollout steps.
        seed: seed of the action shuffle.

    Returns:
        `{"model": [H], "shuffled_actions": [H], "repeat_last": [H]}`.
    """
    context = getattr(world_model, "context_frames", 1) - 1  # frames before the first latent's own
    z = world_model.encode(frames[:, : context + horizon + 1])
    target, actions = z[:, 1:], actions[:, context : context + horizon]
    B = z.size(0)
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(B, generator=generator)
    while B > 1 and bool((perm == torch.arange(B)).any()):  # no clip keeps its own actions
        perm = torch.randperm(B, generator=generator)
    predictions = {
        "model": world_model.rollout(z[:, :1], actions),
        "shuffled_actions": world_model.rollout(z[:, :1], actions[perm.to(actions.device)]),
        "repeat_last": z[:, :1].expand_as(target),
    }
    return {name: (p - target).square().flatten(2).mean(dim=(0, 2)).tolist() for name, p in predictions.items()}

"""V-JEPA 2-AC training: a block-causal action-conditioned predictor on a frozen encoder's frame latents.

Loss (vjepa2 `app/vjepa_droid/train.py`): L1 between layer-normed predictions and layer-normed frame latents, for
one teacher-forcing pass (every frame predicted from the true frames before it) plus an auto-regressive rollout of
`auto_steps` frames from the first one. The rollout advances states by the actions (`ACWorldModel`), exactly as
the planner and the offline evaluation will, instead of reading the future ground-truth states as the reference
does: a rollout never sees information that planning will not have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from jepa.checkpoints import load_encoder
from jepa.losses import jepa_l1_loss
from jepa.models.ac_predictor import ACWorldModel, VisionTransformerPredictorAC
from jepa.tasks.base import JEPATask, Schedule

ENCODER_HINT = (
    "pretrain one first (`python launch/train.py +experiment=tworooms_vjepa` for Two Rooms) or point "
    "model.encoder_checkpoint at a .ckpt of ours or a released V-JEPA 2 .pt"
)


class ActionConditionedTask(JEPATask):
    """Frozen encoder + trainable AC predictor.

    Batches are dicts with `video` (B, C, T, H, W), `actions` (B, T - 1, A) and `states` (B, T, S).

    Args:
        encoder: the encoder architecture the checkpoint holds (its weights are loaded in `configure_model`,
            inside `Trainer.fit`, so a missing file ends with one clear message).
        predictor: `VisionTransformerPredictorAC` (its `embed_dim` is the encoder's).
        encoder_checkpoint: our pretraining `.ckpt` or a released V-JEPA 2 `.pt`; None keeps `encoder` as given.
        which: "target" (EMA) or "context" encoder of the checkpoint.
        auto_steps: frames predicted auto-regressively for the rollout loss (vjepa2 default 2), or a schedule
            `step -> frames` (e.g. `jepa.optim.StepSchedule`): a curriculum that first learns short rollouts, whose
            errors are small enough to carry the action signal, then long ones (Two Rooms, BENCHMARKS.md). Capped
            by the window: at most T - 1.
        train_frames: frames of each window trained on (the first ones), or a schedule `step -> frames`; None =
            the whole window. With `auto_steps` as a schedule this makes a curriculum: short windows and rollouts
            first (cheap steps, and errors small enough to carry the action signal), then long ones.
        integrate_states: rollouts advance states by the actions (see `ACWorldModel`).
        residual: predict latent changes (see `ACWorldModel`).
        zero_init_residual: with `residual`, start the output projection at zero, i.e. from "repeat the last
            latent". Everything before the output layer then gets gradients scaled by its (near-zero) weights: with
            changes as small and noisy as Two Rooms', keep the random init instead (and a small `output_scale`).
        latent_loss: distance between predicted and true layer-normed latents, `(pred, target) -> scalar`:
            `jepa_l1_loss` (the reference) or `jepa_l2_loss` (mean squared error). L1's gradient has the same size
            for every element, however small its error: where an action moves a few tokens of a static scene (Two
            Rooms: 2-4 of 64), the tokens it leaves unchanged, whose tiny changes cannot be predicted, drown the few
            it moves, and the predictor settles on "repeat the last latent" and ignores the actions. L2 weighs each
            element's pull by its error.
        optimizer, lr_schedule, wd_schedule, ema_schedule: as `JEPATask` (nothing is EMA-updated here).
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: VisionTransformerPredictorAC,
        optimizer: Callable,
        lr_schedule: Schedule,
        wd_schedule: Schedule,
        ema_schedule: Schedule,
        encoder_checkpoint: str | None = None,
        which: str = "target",
        auto_steps: int | Schedule = 2,
        train_frames: int | Schedule | None = None,
        integrate_states: bool = True,
        residual: bool = False,
        zero_init_residual: bool = True,
        latent_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = jepa_l1_loss,
    ) -> None:
        super().__init__(optimizer, lr_schedule, wd_schedule, ema_schedule)
        self.latent_loss = latent_loss
        self.encoder = encoder.eval().requires_grad_(False)
        self.predictor = predictor
        self.integrate_states = integrate_states
        self.residual = residual
        if residual and zero_init_residual:
            nn.init.zeros_(self.predictor.predictor_proj.weight)
        self.encoder_checkpoint = encoder_checkpoint
        self.which = which
        self.auto_steps = auto_steps
        self.train_frames = train_frames
        self._encoder_loaded = encoder_checkpoint is None

    def configure_model(self) -> None:
        """Loads the frozen encoder's weights once (a resumed run then restores the same ones from its .ckpt)."""
        if self._encoder_loaded:
            return
        if not Path(self.encoder_checkpoint).is_file():
            raise FileNotFoundError(f"encoder checkpoint not found: {self.encoder_checkpoint}; {ENCODER_HINT}")
        load_encoder(self.encoder_checkpoint, which=self.which, encoder=self.encoder, freeze=True)
        self._encoder_loaded = True

    def _scheduled(self, value: int | Schedule) -> int:
        return max(1, round(value(self.global_step))) if callable(value) else value

    def rollout_steps(self) -> int:
        """Frames of this step's rollout loss (`auto_steps`, or its schedule at the current step)."""
        return self._scheduled(self.auto_steps)

    def window(self, batch: dict) -> dict:
        """The batch cut to this step's `train_frames` (video (B, C, T, H, W), actions (B, T - 1, A), states)."""
        if self.train_frames is None:
            return batch
        T = max(2, self._scheduled(self.train_frames))
        if T > batch["video"].size(2):
            raise ValueError(
                f"train_frames={T} needs windows of at least {T} frames, the data gives {batch['video'].size(2)}: "
                f"raise data.frames_per_clip to {T}"
            )
        return {
            "video": batch["video"][:, :, :T],
            "actions": batch["actions"][:, : T - 1],
            "states": batch["states"][:, :T],
        }

    @property
    def world_model(self) -> ACWorldModel:
        """The planning seam over this task's modules (built on access: registering it would list them twice)."""
        return ACWorldModel(self.encoder, self.predictor, self.integrate_states, self.residual)

    def module_kwargs(self) -> dict[str, dict]:
        world_model = {"integrate_states": self.integrate_states, "residual": self.residual}
        return {
            "encoder": self.encoder.init_kwargs,
            "ac_predictor": self.predictor.init_kwargs,
            "world_model": world_model,
        }

    def train(self, mode: bool = True) -> ActionConditionedTask:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout / drop-path, ever
        return self

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch = self.window(batch)
        z = self.world_model.encode_frames(batch["video"])  # (B, T, N, D), no grad
        actions, states = batch["actions"], batch["states"]
        steps = min(self.rollout_steps(), z.size(1) - 1)

        z_tf = self.world_model.step(z[:, :-1], actions, states[:, :-1])
        loss_tf = self.latent_loss(z_tf, z[:, 1:])
        z_ar = self.world_model.rollout(z[:, :1], actions[:, :steps], states[:, :1])
        loss_ar = self.latent_loss(z_ar, z[:, 1 : steps + 1])
        loss = loss_tf + loss_ar

        metrics = {"train/loss": loss, "train/loss_tf": loss_tf, "train/loss_rollout": loss_ar}
        metrics["train/rollout_steps"] = float(steps)
        self.log_dict(metrics, on_step=True, prog_bar=False)
        self.log("loss", loss, prog_bar=True, logger=False)
        return loss


@torch.no_grad()
def rollout_errors(
    world_model: ACWorldModel, batches: Iterable[dict], horizon: int, num_windows: int, seed: int = 0
) -> dict[str, list[float]]:
    """Offline evaluation: latent prediction error per rollout step against two baselines.

    For each window of horizon + 1 frames, the world model rolls out `horizon` latents from the first frame with
    (a) the true actions, (b) the actions of another window of the batch (a fixed random permutation; the first
    state stays the true one), and (c) the baseline "repeat the last latent" predicts frame 0's latent forever.
    The error is the mean absolute difference to the encoded true frames (the training loss), per step 1..horizon.

    Args:
        world_model: the model to evaluate (eval mode).
        batches: dicts with `video` (B, C, >= horizon + 1, H, W), `actions` (B, >= horizon, A), `states`.
        horizon: rollout steps H.
        num_windows: windows to average over (batches are consumed until this many are seen).
        seed: seed of the action shuffles.

    Returns:
        `{"model": [H], "shuffled_actions": [H], "repeat_last": [H], "windows": int}` plus the standard errors of
        the paired per-window differences, `"se_model_vs_shuffled"` and `"se_model_vs_repeat"` ([H] each): the
        model is clearly better than a baseline at step h when the gap is many of them.
    """
    generator = torch.Generator().manual_seed(seed)
    sums = {name: torch.zeros(horizon, dtype=torch.float64) for name in ("model", "shuffled_actions", "repeat_last")}
    baselines = {"shuffled_actions": "se_model_vs_shuffled", "repeat_last": "se_model_vs_repeat"}
    gap_sums = {name: torch.zeros(2, horizon, dtype=torch.float64) for name in baselines}  # sum of d and of d^2
    seen = 0
    for batch in batches:
        video, actions, states = batch["video"], batch["actions"][:, :horizon], batch["states"][:, :1]
        z = world_model.encode_frames(video[:, :, : horizon + 1])  # (B, H+1, N, D)
        target = z[:, 1:]
        B = z.size(0)
        perm = torch.randperm(B, generator=generator)
        while B > 1 and bool((perm == torch.arange(B)).any()):  # a derangement: no window keeps its own actions
            perm = torch.randperm(B, generator=generator)
        preds = {
            "model": world_model.rollout(z[:, :1], actions, states),
            "shuffled_actions": world_model.rollout(z[:, :1], actions[perm], states),
            "repeat_last": z[:, :1].expand_as(target),
        }
        per_window = {name: (pred - target).abs().mean(dim=(2, 3)).double() for name, pred in preds.items()}  # (B, H)
        for name, errors in per_window.items():
            sums[name] += errors.sum(0)
        for name in baselines:
            gap = per_window["model"] - per_window[name]
            gap_sums[name] += torch.stack((gap.sum(0), gap.square().sum(0)))
        seen += B
        if seen >= num_windows:
            break
    if seen == 0:
        raise ValueError("no evaluation windows: the data gave no batch")
    errors = {name: (total / seen).tolist() for name, total in sums.items()}
    for name, key in baselines.items():
        mean, mean_square = gap_sums[name] / seen
        variance = (mean_square - mean.square()).clamp_min(0) * seen / max(seen - 1, 1)
        errors[key] = (variance / seen).sqrt().tolist()
    return {**errors, "windows": seen}

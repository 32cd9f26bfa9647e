"""V-JEPA / V-JEPA 2 pretraining: predict EMA-target features of masked tokens from the visible context."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from jepa.losses import jepa_l1_loss, layer_norm_targets
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer, gather_tokens
from jepa.tasks.base import JEPATask, Schedule


class PretrainTask(JEPATask):
    """Context encoder + EMA target encoder + masked predictor, L1 on layer-normed target features.

    Batches are dicts with `video` (B, C, T, H, W) and, per mask family i, `ctx_idx[i]` (B, Kc) and
    `tgt_idx[i]` (B, Kt) sorted token indices (from `jepa.masks.MaskCollator`, run in the data workers).
    Mask family i uses the predictor's mask token i.
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        predictor: VisionTransformerPredictor,
        optimizer: Callable,
        lr_schedule: Schedule,
        wd_schedule: Schedule,
        ema_schedule: Schedule,
    ) -> None:
        super().__init__(optimizer, lr_schedule, wd_schedule, ema_schedule)
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.ema_pairs = [(self.target_encoder, self.encoder)]

    def module_kwargs(self) -> dict[str, dict]:
        return {"encoder": self.encoder.init_kwargs, "predictor": self.predictor.init_kwargs}

    @torch.no_grad()
    def target_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, N, D) layer-normed EMA-target features; one pass shared by every mask."""
        return layer_norm_targets(self.target_encoder(x))

    def predict(self, x: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor, mask_index: int) -> torch.Tensor:
        """Encodes the context tokens and predicts the (B, Kt, D) target features."""
        z_ctx = self.encoder(x, keep=ctx_idx)
        return self.predictor(z_ctx, ctx_idx, tgt_idx, mask_index=mask_index, grid=self.encoder.grid_shape(x))

    def loss_and_metrics(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """The V-JEPA objective for one batch: mean over mask families of the L1 prediction loss."""
        x = batch["video"]
        z_tgt = self.target_features(x)
        losses = []
        for i, (ctx_idx, tgt_idx) in enumerate(zip(batch["ctx_idx"], batch["tgt_idx"], strict=True)):
            z_pred = self.predict(x, ctx_idx, tgt_idx, mask_index=i)
            losses.append(jepa_l1_loss(z_pred, gather_tokens(z_tgt, tgt_idx)))
        loss = torch.stack(losses).mean()
        num_tokens = z_tgt.size(1)
        metrics = {
            "train/loss": loss.detach(),
            "train/masked_fraction": sum(t.size(1) for t in batch["tgt_idx"]) / (len(losses) * num_tokens),
            # collapse signal: per-channel std of the targets over all clips and tokens (-> 0 if collapsed)
            "train/target_std": z_tgt.flatten(0, 1).std(0).mean(),
        }
        return loss, metrics

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, metrics = self.loss_and_metrics(batch)
        self.log_dict(metrics, on_step=True, prog_bar=False)
        self.log("loss", loss.detach(), prog_bar=True, logger=False)
        return loss

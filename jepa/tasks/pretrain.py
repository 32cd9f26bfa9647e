"""V-JEPA 2 / 2.1 pretraining: predict EMA-target features of masked tokens from the visible context.

V-JEPA 2.1 is configuration of the same task: an encoder with `taps` (its training output is several levels), a
predictor with as many levels and a context head (`return_all_tokens`), and a `context_loss_weight` schedule, which
turns on the dense loss on the visible tokens (`jepa.losses`). Without those it is exactly V-JEPA 2.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from jepa.losses import context_distances, jepa_l1_loss, layer_norm_levels, weighted_l1_loss
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer, gather_tokens
from jepa.tasks.base import JEPATask, Schedule


class PretrainTask(JEPATask):
    """Context encoder + EMA target encoder + masked predictor, L1 on layer-normed target features.

    Batches are dicts with `video` (B, C, T, H, W) and, per mask family i, `ctx_idx[i]` (B, Kc) and
    `tgt_idx[i]` (B, Kt) sorted token indices (from `jepa.masks.MaskCollator`, run in the data workers).
    Mask family i uses the predictor's mask token i. A batch with T == 1 is an image batch: with an image
    tokenizer in the encoder (`img_temporal_dim_size=1`) it takes that and the image modality vectors.

    Args:
        context_loss_weight: V-JEPA 2.1's lambda(step) of the loss on the visible tokens (e.g.
            `jepa.losses.ContextLossRamp`); None = V-JEPA 2 (masked tokens only).
        image_context_loss_weight: lambda(step) for image batches (the reference's `lambda_value_img`); None = the
            video one.
        distance_weighting: weight each visible token's loss by 1 / sqrt(distance to the nearest masked token)
            (the reference's `weight_distance_loss`, on in its recipes); False = plain mean.
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        predictor: VisionTransformerPredictor,
        optimizer: Callable,
        lr_schedule: Schedule,
        wd_schedule: Schedule,
        ema_schedule: Schedule,
        context_loss_weight: Schedule | None = None,
        image_context_loss_weight: Schedule | None = None,
        distance_weighting: bool = True,
    ) -> None:
        super().__init__(optimizer, lr_schedule, wd_schedule, ema_schedule)
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.ema_pairs = [(self.target_encoder, self.encoder)]
        self.context_loss_weight = context_loss_weight
        self.image_context_loss_weight = image_context_loss_weight or context_loss_weight
        self.distance_weighting = distance_weighting
        self._check_shapes()

    def _check_shapes(self) -> None:
        levels, width = self.encoder.num_levels, self.encoder.embed_dim
        if self.predictor.out_dim != levels * width:
            raise ValueError(
                f"the predictor outputs {self.predictor.out_dim} channels but the encoder's training output has "
                f"{levels} level(s) of {width}: set predictor num_levels={levels} and out_embed_dim={width}"
            )
        if self.context_loss_weight is not None and not hasattr(self.predictor, "predictor_proj_context"):
            raise ValueError("the context loss needs a predictor with return_all_tokens=true (its context head)")

    def module_kwargs(self) -> dict[str, dict]:
        return {"encoder": self.encoder.init_kwargs, "predictor": self.predictor.init_kwargs}

    @torch.no_grad()
    def target_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, N, L*D) EMA-target features, each level layer-normed; one pass for every mask."""
        return layer_norm_levels(self.target_encoder(x, all_levels=True), self.encoder.num_levels)

    def predict(
        self,
        x: torch.Tensor,
        ctx_idx: torch.Tensor,
        tgt_idx: torch.Tensor,
        mask_index: int,
        with_context: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encodes the context tokens and predicts the (B, Kt, L*D) target features (and, `with_context`, the
        (B, Kc, L*D) context features from the predictor's context head)."""
        z_ctx = self.encoder(x, keep=ctx_idx, all_levels=True)
        return self.predictor(
            z_ctx,
            ctx_idx,
            tgt_idx,
            mask_index=mask_index,
            grid=self.encoder.grid_shape(x),
            is_image=self.encoder.is_image_input(x),
            return_context=with_context,
        )

    def loss_and_metrics(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """The V-JEPA objective for one batch: mean over mask families of the L1 prediction loss, plus with
        V-JEPA 2.1 lambda(step) times the mean distance-weighted L1 of the context predictions."""
        x = batch["video"]
        z_tgt = self.target_features(x)
        dense = self.context_loss_weight is not None
        losses, context_losses = [], []
        for i, (ctx_idx, tgt_idx) in enumerate(zip(batch["ctx_idx"], batch["tgt_idx"], strict=True)):
            out = self.predict(x, ctx_idx, tgt_idx, mask_index=i, with_context=dense)
            z_pred = out[0] if dense else out
            losses.append(jepa_l1_loss(z_pred, gather_tokens(z_tgt, tgt_idx)))
            if dense:
                context_losses.append(self.context_loss(out[1], z_tgt, ctx_idx, tgt_idx, self.encoder.grid_shape(x)))
        loss = torch.stack(losses).mean()
        num_tokens = z_tgt.size(1)
        metrics = {
            "train/loss": loss.detach(),
            "train/masked_fraction": sum(t.size(1) for t in batch["tgt_idx"]) / (len(losses) * num_tokens),
            # collapse signal: per-channel std of the targets over all clips and tokens (-> 0 if collapsed)
            "train/target_std": z_tgt.flatten(0, 1).std(0).mean(),
        }
        if dense:
            image = self.encoder.is_image_input(x)
            weight = (self.image_context_loss_weight if image else self.context_loss_weight)(self.global_step)
            context_loss = torch.stack(context_losses).mean()
            metrics["train/loss_masked"] = loss.detach()
            loss = loss + weight * context_loss
            metrics.update({"train/loss": loss.detach(), "train/loss_context": context_loss.detach()})
            metrics["train/context_weight"] = weight
        return loss, metrics

    def context_loss(
        self,
        z_ctx_pred: torch.Tensor,
        z_tgt: torch.Tensor,
        ctx_idx: torch.Tensor,
        tgt_idx: torch.Tensor,
        grid: tuple[int, int, int],
    ) -> torch.Tensor:
        """V-JEPA 2.1's loss on the visible tokens: (B, Kc, L*D) predictions vs their targets, each token weighted by
        1 / sqrt(grid distance to the nearest masked token) when `distance_weighting`."""
        weights = 1.0 / context_distances(ctx_idx, tgt_idx, grid) if self.distance_weighting else None
        return weighted_l1_loss(z_ctx_pred, gather_tokens(z_tgt, ctx_idx), weights)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, metrics = self.loss_and_metrics(batch)
        self.log_dict(metrics, on_step=True, prog_bar=False)
        self.log("loss", loss.detach(), prog_bar=True, logger=False)
        return loss

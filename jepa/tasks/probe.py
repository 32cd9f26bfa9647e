"""Frozen-encoder probes: train an attentive or linear head on labelled clips, report held-out top-1 / top-5."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jepa.models.vit import VisionTransformer
from jepa.tasks.base import JEPATask, Schedule


def no_ema(step: int) -> float:
    """Probes have no target network; the shared machinery still asks for a momentum."""
    return 1.0


class ProbeTask(JEPATask):
    """A trainable head on a frozen encoder (eval mode, no gradients, features under `no_grad`).

    Batches are dicts with `video` (B, V, C, T, H, W) (V views per video: 1 in training, clips x spatial views in
    eval) and `label` (B,). Training averages the loss over views; evaluation averages the softmax over views, as
    V-JEPA 2's `evals/video_classification_frozen`, and accumulates top-1 / top-5 over the whole held-out pass
    (summed over ranks), left in `results` after each validation.

    Args:
        encoder: the encoder to probe; it is frozen here whatever its state.
        head: (B, N, D) tokens -> (B, C) logits, e.g. `jepa.models.pooler.AttentiveClassifier`.
        optimizer, lr_schedule, wd_schedule: as in `JEPATask` (the head's parameters only).
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        head: nn.Module,
        optimizer: Callable,
        lr_schedule: Schedule,
        wd_schedule: Schedule,
    ) -> None:
        super().__init__(optimizer, lr_schedule, wd_schedule, no_ema)
        self.encoder = encoder.eval().requires_grad_(False)
        self.head = head
        self.results: dict[str, Any] = {}
        self._counts: torch.Tensor | None = None

    def module_kwargs(self) -> dict[str, dict]:
        return {"encoder": self.encoder.init_kwargs, "head": getattr(self.head, "init_kwargs", {})}

    def train(self, mode: bool = True) -> ProbeTask:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout / drop-path, whatever Lightning switches
        return self

    @torch.no_grad()
    def features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, V, C, T, H, W) -> (B * V, N, D) frozen encoder tokens."""
        return self.encoder(video.flatten(0, 1))

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        logs = self.apply_schedules()
        logs.pop("train/ema_momentum")
        self.log_dict(logs, on_step=True, prog_bar=False)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, y = batch["video"], batch["label"]
        logits = self.head(self.features(x))  # (B * V, C)
        y = y.repeat_interleave(x.size(1))
        loss = F.cross_entropy(logits, y)
        top1 = (logits.argmax(-1) == y).float().mean()
        self.log_dict({"train/loss": loss, "train/top1": top1}, on_step=True, prog_bar=False)
        self.log("loss", loss, prog_bar=True, logger=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._counts = torch.zeros(3, dtype=torch.long, device=self.device)  # top-1 hits, top-5 hits, videos

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x, y = batch["video"], batch["label"]
        B, V = x.shape[:2]
        probs = self.head(self.features(x)).float().softmax(-1).view(B, V, -1).mean(1)  # (B, C)
        top5 = probs.topk(min(5, probs.size(-1)), dim=-1).indices  # (B, <=5)
        hits = top5 == y[:, None]
        self._counts += torch.stack([hits[:, 0].sum(), hits.any(-1).sum(), y.new_tensor(B)])

    def on_validation_epoch_end(self) -> None:
        counts = self.all_gather(self._counts)
        counts = counts.view(-1, 3).sum(0).tolist()  # over ranks
        top1, top5, videos = counts
        if videos == 0:
            raise RuntimeError("the held-out split gave no labelled video; check data.val_shards and data.label_key")
        self.results = {"top1": 100.0 * top1 / videos, "top5": 100.0 * top5 / videos, "num_videos": videos}
        self.log_dict({"val/probe_top1": self.results["top1"], "val/probe_top5": self.results["top5"]})

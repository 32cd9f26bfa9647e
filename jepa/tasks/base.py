"""Shared training machinery: optimizer groups, step-driven LR/WD/EMA schedules, EMA update, throughput.

Pretraining (V-JEPA 2 / 2.1) and action-conditioned training subclass `JEPATask` and add only their step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel

from jepa.optim import ema_update, param_groups

Schedule = Callable[[int], float]


class JEPATask(L.LightningModule):
    """Base LightningModule.

    Args:
        optimizer: partial optimizer constructor taking param groups (e.g. `torch.optim.AdamW`, `_partial_`).
        lr_schedule: step -> learning rate.
        wd_schedule: step -> weight decay of the decayed group.
        ema_schedule: step -> EMA momentum of the target networks.

    Subclasses set `self.ema_pairs = [(target, online), ...]` and return the constructor kwargs of their
    rebuildable modules from `module_kwargs()` (stored in every checkpoint).
    """

    def __init__(self, optimizer: Callable, lr_schedule: Schedule, wd_schedule: Schedule, ema_schedule: Schedule):
        super().__init__()
        self.optimizer_factory = optimizer
        self.lr_schedule = lr_schedule
        self.wd_schedule = wd_schedule
        self.ema_schedule = ema_schedule
        self.ema_pairs: list[tuple[nn.Module, nn.Module]] = []
        self._last_batch_time: float | None = None

    def trainable_modules(self) -> list[nn.Module]:
        """Child modules with trainable parameters (frozen targets and encoders are left out)."""
        return [m for m in self.children() if any(p.requires_grad for p in m.parameters())]

    def module_kwargs(self) -> dict[str, dict]:
        return {}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = param_groups(self.trainable_modules(), self.wd_schedule(0))
        return self.optimizer_factory(groups)

    def apply_schedules(self) -> dict[str, float]:
        """Sets LR and WD of every group from `global_step` (so a resumed run continues exactly)."""
        step = self.global_step
        lr, wd = self.lr_schedule(step), self.wd_schedule(step)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
                if group.get("apply_wd", True):
                    group["weight_decay"] = wd
        return {"train/lr": lr, "train/wd": wd, "train/ema_momentum": self.ema_schedule(step)}

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        self.log_dict(self.apply_schedules(), on_step=True, prog_bar=False)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # once per real optimizer step (not per micro-batch under gradient accumulation)
        momentum = self.ema_schedule(self.global_step)
        for target, online in self.ema_pairs:
            ema_update(target, online, momentum)

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm=None
    ) -> None:
        """Global-norm clipping that also works under FSDP, whose precision plugin refuses "norm" (PITFALLS 5)."""
        wrapped = self.trainer.strategy.model
        if (
            gradient_clip_val
            and gradient_clip_algorithm in (None, "norm")
            and isinstance(wrapped, FullyShardedDataParallel)
        ):
            wrapped.clip_grad_norm_(gradient_clip_val)  # the root FSDP module reduces the norm over all shards
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def batch_clips(self, batch: dict) -> int:
        """Clips in a batch (for `perf/clips_per_s`)."""
        return batch["video"].size(0)

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_batch_time is not None:
            clips = self.batch_clips(batch) * self.trainer.world_size
            self.log("perf/clips_per_s", clips / (now - self._last_batch_time), on_step=True, prog_bar=True)
        self._last_batch_time = now

    def on_train_epoch_start(self) -> None:
        self._last_batch_time = None  # the first batch of an epoch includes worker start-up

    def train(self, mode: bool = True) -> JEPATask:
        super().train(mode)
        for target, _ in self.ema_pairs:
            target.eval()  # targets never use dropout / drop-path
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["module_kwargs"] = self.module_kwargs()

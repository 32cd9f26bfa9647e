"""Stop a diverged run: a non-finite loss skips its update, and `patience` of them in a row end the run.

Lightning trains on through a NaN loss and checkpoints NaN weights (PITFALLS 13). `NonFiniteLossGuard` checks the
loss of every micro-batch before its backward pass; when any rank saw a non-finite one, every rank drops the
step's gradients, so the optimizer leaves the weights as they were (a single spike, e.g. one bad batch, costs one
step). After ``patience`` such steps in a row the run stops with `NonFiniteLossError`, naming the steps.

Checkpoints keep the last good state: `FiniteModelCheckpoint` skips its periodic save at a step whose loss was not
finite (the weights then gave NaN on that batch: a learning rate of 1e30 makes finite but useless weights first),
and `NonFiniteLossGuard.on_save_checkpoint` refuses any save of non-finite weights.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced non-finite losses (or weights) and was stopped; the message names the steps."""


class NonFiniteLossGuard(L.Callback):
    """Skip updates from non-finite losses; stop after ``patience`` consecutive ones; never save non-finite weights.

    Args:
        patience: Consecutive optimizer steps with a non-finite loss that stop the run (>= 1).
    """

    def __init__(self, patience: int = 3) -> None:
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        self.patience = patience
        self.bad_steps: list[int] = []  # the current run of consecutive bad steps
        self._micro_batch_bad = False
        self._step_bad: bool | None = None  # decided in on_before_optimizer_step, counted in on_train_batch_end
        self._last_loss: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.bad_steps, self._micro_batch_bad, self._step_bad = [], False, None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            self._micro_batch_bad = True
            self._last_loss = float(loss.detach().float().sum())

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        # One decision for all ranks (a NaN on one rank poisons the averaged gradients of all of them).
        bad = trainer.strategy.reduce_boolean_decision(self._micro_batch_bad, all=False)
        self._micro_batch_bad = False
        self._step_bad = bad
        if bad:
            # No gradient, no update: the optimizer skips parameters whose .grad is None (no moment or decay update).
            optimizer.zero_grad(set_to_none=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._step_bad is None:  # a micro-batch inside gradient accumulation: no optimizer step yet
            return
        bad, self._step_bad = self._step_bad, None
        step = trainer.global_step  # counted from 1: the step that just ran
        if not bad:
            self.bad_steps = []
            return
        self.bad_steps.append(step)
        loss = "nan" if self._last_loss is None else f"{self._last_loss}"
        log.warning("step %d: non-finite loss (%s); its update is skipped (%d in a row)", step, loss,
                    len(self.bad_steps))  # fmt: skip
        if len(self.bad_steps) >= self.patience:
            raise NonFiniteLossError(self._message(trainer))

    def _message(self, trainer: L.Trainer) -> str:
        first, last = self.bad_steps[0], self.bad_steps[-1]
        steps = f"step {first}" if first == last else f"steps {first}-{last}"
        folder = getattr(trainer.checkpoint_callback, "dirpath", None)
        kept = f"the checkpoints in {folder} are from before and stay as they were; " if folder else ""
        return (
            f"training diverged: the loss was not finite (nan or inf) at {steps} ({len(self.bad_steps)} steps in a "
            f"row, the limit set by callbacks.nonfinite.patience={self.patience}); the updates of those steps were "
            f"skipped and nothing was saved from them; {kept}lower the learning rate (optim.lr_schedule.peak), "
            "clip gradients (trainer.gradient_clip_val=1.0) or check the data"
        )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Every rank checks its own parameters (shards under FSDP), then all agree, so all ranks abort the same save.
        local = any(not bool(torch.isfinite(p.detach()).all()) for p in pl_module.parameters())
        if trainer.strategy.reduce_boolean_decision(local, all=False):
            raise NonFiniteLossError(
                f"the weights at step {trainer.global_step} are not finite (nan or inf): not saving them, so the "
                "last checkpoint keeps the last good state; lower the learning rate (optim.lr_schedule.peak) or "
                "clip gradients (trainer.gradient_clip_val=1.0)"
            )


class FiniteModelCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint` (same arguments) that skips its periodic save at a step with a non-finite loss.

    The save moves to the next checkpoint step (or the end of training), so ``last.ckpt`` never holds weights that
    just produced NaN. All ranks decide together (a save is collective).
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        bad = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            log.warning("step %d: loss not finite, checkpoint not saved at this step", trainer.global_step)
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

"""The benchmark's analytic FLOP model agrees with torch's flop counter (so its MFU figures mean something)."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import train_step  # noqa: E402


def test_analytic_flops_match_the_flop_counter():
    args = argparse.Namespace(
        encoder="vit_tiny", frames=4, res=32, batch=2, act_ckpt=False, compile=False, foreach=False, warmup=0, steps=1
    )
    torch.manual_seed(0)
    task, optimizer, collator = train_step.build(args, torch.device("cpu"))
    task.encoder.blocks = task.encoder.blocks[:2]
    task.target_encoder.blocks = task.target_encoder.blocks[:2]
    task.predictor.predictor_blocks = task.predictor.predictor_blocks[:2]
    (batch,) = train_step.make_batches(args, collator, torch.device("cpu"))
    masks = [(c.size(1), t.size(1)) for c, t in zip(batch["ctx_idx"], batch["tgt_idx"], strict=True)]
    analytic = train_step.analytic_step_flops(task.encoder, task.predictor, 2 * 2 * 2, masks, args.batch)
    with FlopCounterMode(display=False) as counter:
        train_step.train_step(task, optimizer, batch, nullcontext())
    counted = counter.get_total_flops()
    assert abs(analytic - counted) / counted < 0.15, (analytic, counted)

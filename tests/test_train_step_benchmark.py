"""The step benchmark runs the trainer's own step from the composed config, and its analytic FLOP model agrees with
torch's flop counter (so its MFU figures mean something)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import train_step

TINY = [
    "+experiment=cpu_quick",
    "trainer.precision=32-true",
    "encoder.embed_dim=48",
    "encoder.depth=2",
    "encoder.num_heads=2",
    "encoder.patch_size=8",
    "encoder.num_frames=4",
    "encoder.img_size=32",
    "predictor.predictor_embed_dim=32",
    "predictor.depth=2",
    "predictor.num_heads=2",
    "data.batch_size=2",
]


def test_benchmark_steps_are_the_trainers_and_flops_match_the_counter():
    cfg = train_step.compose_config(TINY)
    bench = train_step.Bench(cfg, steps=2)
    assert type(bench.task).__name__ == "PretrainTask" and bench.task.encoder.embed_dim == 48
    before = {k: v.clone() for k, v in bench.task.encoder.state_dict().items()}
    with FlopCounterMode(display=False) as counter:
        times = bench.fit(bench.batches[:1])
    assert len(times) == 1 and times[0] > 0
    # Lightning ran the optimizer step: the weights moved
    assert any(not torch.equal(before[k], v) for k, v in bench.task.encoder.state_dict().items())
    masks = train_step.step_masks(bench.batches[0])
    analytic = train_step.analytic_step_flops(bench.task.encoder, bench.task.predictor, 2 * 4 * 4, masks, 2)
    counted = counter.get_total_flops()
    assert abs(analytic - counted) / counted < 0.15, (analytic, counted)


def test_benchmark_reports_one_json_row(capsys):
    train_step.main(["--steps", "1", "--warmup", "0", "--gemm-size", "256", "--gemm-seconds", "0.05", *TINY])
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"encoder"' in row and '"step_s"' in row and '"precision": "32-true"' in row

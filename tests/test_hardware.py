"""The presets' machine-dependent defaults: bf16 where the hardware computes it, the compiled step on CUDA only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from jepa import hardware
from launch import train as train_launcher

REPO = Path(__file__).resolve().parents[1]

train_launcher.register_resolvers()


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(("forced", "precision"), [("1", "bf16-mixed"), ("0", "32-true")])
def test_cpu_preset_follows_native_bf16_and_is_overridable(monkeypatch, forced, precision):
    monkeypatch.setenv("JEPA_CPU_BF16", forced)
    assert hardware.auto_precision("cpu") == precision
    assert compose_train("+experiment=cpu_quick").trainer.precision == precision
    assert compose_train("+experiment=cpu_quick", "trainer.precision=32-true").trainer.precision == "32-true"
    # recipes whose published results are fp32 stay fp32 on every CPU
    assert compose_train("+experiment=tworooms_ac").trainer.precision == "32-true"


def test_native_bf16_detection_reads_the_cpu_flags(monkeypatch):
    monkeypatch.delenv("JEPA_CPU_BF16", raising=False)
    flags = hardware.cpu_flags()
    expected = torch.backends.cpu.get_cpu_capability().startswith("AVX512") and bool(
        {"avx512_bf16", "amx_bf16"} & flags
    )
    assert hardware.cpu_bf16_native() == expected


def test_compile_fixed_counts_and_cudnn_benchmark_go_together():
    cfg = compose_train("+experiment=vjepa2_small", "trainer=cpu")
    assert cfg.compile is False and cfg.mask.fixed_counts is False and cfg.trainer.benchmark is False
    cfg = compose_train("+experiment=vjepa2_small", "trainer=gpu")
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.compile == torch.cuda.is_available()  # compiled on CUDA by default
    cfg = compose_train("+experiment=vjepa2_small", "trainer=gpu", "compile=true")
    assert cfg.mask.fixed_counts is True and cfg.trainer.benchmark is True
    cfg = compose_train("+experiment=vjepa2_small", "trainer=gpu", "compile=false")  # eager stays available
    assert cfg.mask.fixed_counts is False and cfg.trainer.benchmark is False
    cfg = compose_train("trainer=fsdp")
    assert cfg.trainer.precision == "bf16-mixed" and cfg.compile is False  # FSDP trains eager unless asked
    assert hardware.auto_compile("cpu") is False

"""What the machine offers, for the trainer presets: bf16 on GPUs and on CPUs that compute it natively, and
torch.compile (with fixed mask token counts and cuDNN autotuning) on CUDA.

`launch/train.py` registers these as the config resolvers `${auto_precision:...}` and `${auto_compile:...}`; every
choice they make is a default that a plain override replaces (`trainer.precision=32-true`, `compile=false`).
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch

# CPU flags (Linux /proc/cpuinfo names) of instructions that compute bf16 dot products natively: AVX-512 BF16
# (Cooper Lake, Zen 4 and later) and AMX tiles (Sapphire Rapids and later). Without them oneDNN emulates bf16 in
# fp32 and bf16 autocast is slower than fp32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX-512 BF16 or AMX), so bf16 autocast pays.

    `JEPA_CPU_BF16=0` / `=1` overrides the detection (e.g. to compare both on one machine)."""
    forced = os.environ.get("JEPA_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512") and any(
        flag in cpu_flags() for flag in BF16_CPU_FLAGS
    )


def _uses_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def auto_precision(accelerator: str = "auto") -> str:
    """Lightning precision for `accelerator`: bf16 autocast ("bf16-mixed", fp32 master weights) on a GPU that
    supports bf16 and on a CPU with native bf16 (`cpu_bf16_native`), full fp32 ("32-true") elsewhere."""
    if _uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_bf16_native() else "32-true"


def auto_compile(accelerator: str = "auto", strategy: str | None = None) -> bool:
    """Whether to train the compiled step: on CUDA yes (fused kernels; the eager step is launch-bound), on CPU no
    (measured: the same speed as eager, after minutes of compiling; BENCHMARKS.md), and not under FSDP (`strategy`
    names the strategy's class), where compiling before Lightning wraps the blocks has not been validated."""
    return _uses_cuda(accelerator) and "FSDP" not in str(strategy or "")

"""The tubelet patch embedding as a strided Conv3d (the reference) against one GEMM on unfolded cubes (ours).

    python benchmarks/patch_embed.py                                    # ViT-S, 16x224^2, batch 2, CPU, fp32 + bf16
    python benchmarks/patch_embed.py --dim 1024 --res 256 --batch 24    # ViT-L on a GPU

Forward + backward of the embedding of every cube (the target encoder's and a full pass) and of a kept subset
(`--keep`, the context encoder's: ours gathers the cubes before the GEMM, the Conv3d embeds all and gathers after),
interleaved round by round in one process; medians. Prints one JSON line per precision.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext

import torch

from jepa.models.vit import PatchEmbed3D, gather_tokens


def conv_tokens(embed: PatchEmbed3D, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    tokens = embed.proj(x).flatten(2).transpose(1, 2)  # vjepa2 PatchEmbed3D
    return tokens if keep is None else gather_tokens(tokens, keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--keep", type=float, default=0.3, help="fraction of cubes the context encoder keeps")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    embed = PatchEmbed3D(16, 2, 3, args.dim).to(device)
    x = torch.randn(args.batch, 3, args.frames, args.res, args.res, device=device)
    n = (args.frames // 2) * (args.res // 16) ** 2
    keep = torch.rand(args.batch, n, device=device).argsort(1)[:, : int(args.keep * n)].sort(1).values

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for precision in ("fp32", "bf16"):
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        variants = {
            "conv3d_all": lambda: conv_tokens(embed, x, None),
            "gemm_all": lambda: embed(x),
            "conv3d_kept": lambda: conv_tokens(embed, x, keep),
            "gemm_kept": lambda: embed(x, keep),
        }
        times: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.rounds + 2):
            for name, fn in variants.items():
                sync()
                start = time.perf_counter()
                with autocast:
                    out = fn()
                out.float().sum().backward()
                sync()
                if r >= 2:  # two warm-up rounds
                    times[name].append(time.perf_counter() - start)
                embed.zero_grad(set_to_none=True)
        ms = {k: round(1e3 * sorted(v)[len(v) // 2], 3) for k, v in times.items()}
        print(
            json.dumps(
                {
                    "precision": precision,
                    "device": str(device),
                    "shape": [args.batch, 3, args.frames, args.res, args.res],
                    "dim": args.dim,
                    "keep": args.keep,
                    "median_ms_fwd_bwd": ms,
                    "speedup_all": round(ms["conv3d_all"] / ms["gemm_all"], 2),
                    "speedup_kept": round(ms["conv3d_kept"] / ms["gemm_kept"], 2),
                    "load_avg": [round(v, 2) for v in os.getloadavg()],
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

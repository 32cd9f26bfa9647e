"""Draw a run's loss curves to a PNG: `python launch/plot.py outputs/cpu_quick [--out loss.png] [--keys K1,K2]`.

Reads ``<run>/csv/metrics.csv`` (every row, across resumes) and plots each ``train/loss*`` column (or ``--keys``)
against the step, raw and smoothed; writes ``<run>/loss.png`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path


def read_curves(metrics: Path, keys: list[str] | None) -> dict[str, tuple[list[int], list[float]]]:
    """``{key: (steps, values)}`` for the wanted columns (default: every ``train/loss*``), finite values only."""
    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    wanted = keys or [c for c in columns if c.startswith("train/loss")]
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for key in wanted:
        points = [(int(float(r["step"])) + 1, float(r[key])) for r in rows if r.get(key) not in (None, "")]
        points = [(s, v) for s, v in points if math.isfinite(v)]
        if points:
            curves[key] = ([s for s, _ in points], [v for _, v in points])
    return curves


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average, bias-corrected (as TensorBoard's smoothing)."""
    out, mean = [], 0.0
    for i, value in enumerate(values, start=1):
        mean = weight * mean + (1 - weight) * value
        out.append(mean / (1 - weight**i))
    return out


def plot(curves: dict[str, tuple[list[int], list[float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, (steps, values) in curves.items():
        (line,) = ax.plot(steps, values, alpha=0.3, linewidth=0.8)
        ax.plot(steps, smooth(values), color=line.get_color(), label=key)
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder (outputs/<run_name>) holding csv/metrics.csv")
    parser.add_argument("--out", default=None, help="the PNG to write (default: <run_dir>/loss.png)")
    parser.add_argument("--keys", default=None, help="comma-separated metric columns (default: train/loss*)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    metrics = run_dir / "csv" / "metrics.csv"
    if not metrics.is_file():
        print(f"error: no metrics in {run_dir}: {metrics} not found (is it a run folder of launch/train.py?)",
              file=sys.stderr)  # fmt: skip
        return 2
    curves = read_curves(metrics, args.keys.split(",") if args.keys else None)
    if not curves:
        print(f"error: {metrics} has no finite values for {args.keys or 'train/loss*'}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else run_dir / "loss.png"
    plot(curves, out, run_dir.name)
    last = {key: values[-1] for key, (_, values) in curves.items()}
    print(f"wrote {out} ({', '.join(f'{k} {v:.4f} at step {curves[k][0][-1]}' for k, v in last.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

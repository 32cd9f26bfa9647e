"""Success rates over seeded episodes, with 95% intervals: what `launch/plan.py` and the planning benchmarks report."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from jepa.planning.mpc import EnvAdapter, EpisodeResult, Policy, run_episode


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sound at 0 and n successes, unlike the normal approximation)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run_episodes(
    policy: Policy,
    env: EnvAdapter,
    seeds: Iterable[int],
    max_env_steps: int,
    goal_image: np.ndarray | None = None,
    on_episode: Callable[[int, EpisodeResult, list[dict]], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per seeded episode (`EpisodeResult.summary()` plus the seed); `on_episode(seed, result, rows)` after
    each (progress, image strips)."""
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        result = run_episode(policy, env, seed, max_env_steps, goal_image=goal_image)
        rows.append({"seed": seed, **result.summary()})
        if on_episode is not None:
            on_episode(seed, result, rows)
    return rows


def success_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Success rate, its 95% Wilson interval, mean final distance and timings of episode rows."""
    if not rows:
        raise ValueError("no episodes to summarise")
    wins = sum(bool(r["success"]) for r in rows)
    low, high = wilson_interval(wins, len(rows))
    return {
        "episodes": len(rows),
        "seeds": [rows[0]["seed"], rows[-1]["seed"]],
        "successes": wins,
        "success_rate": wins / len(rows),
        "success_interval_95": [low, high],
        "mean_final_distance": float(np.mean([r["final_distance"] for r in rows])),
        "seconds_per_episode": float(np.mean([r["seconds"] for r in rows])),
        "seconds_per_plan": float(np.mean([r["seconds_per_plan"] for r in rows])),
    }

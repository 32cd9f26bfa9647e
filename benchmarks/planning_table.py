"""Print the planning table of one or more `launch/plan.py` runs (a multirun sweep folder, run folders, or
results.json files): policy, planner, layout, seeds, success with its 95% interval, final distance, time.

    python launch/plan.py -m planner=cem,mppi,gradient                       # the learned rows, seeds 1000-1059
    python launch/plan.py -m policy=random,oracle                           # the baselines, the same episodes
    python benchmarks/planning_table.py outputs/plan_sweeps/<stamp> outputs/plan_sweeps/<stamp2> [--json out.jsonl]

Every number of the table comes from a results.json written by the launcher; this script only reads them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def results_files(paths: list[str]) -> list[Path]:
    """Every results.json under the given folders (sweeps hold one per job folder), or the files themselves."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob("results.json"), key=lambda p: (len(p.parts), str(p))))
        else:
            raise SystemExit(f"error: {path} is neither a results.json nor a folder of runs")
    if not found:
        raise SystemExit(f"error: no results.json under {paths}: run launch/plan.py first")
    return found


def row(summary: dict) -> dict:
    planner = summary.get("planner") or {}
    env = summary.get("env") or {}
    layout = "fixed" if env.get("fixed_layout") else ("random" if "fixed_layout" in env else env.get("maze", "-"))
    name = summary["policy"] if summary["policy"] != "planner" else planner.get("_target_", "?").rsplit(".", 1)[-1]
    return {
        "env": env.get("_target_", "?").rsplit(".", 1)[-1].removesuffix("Adapter"),
        "layout": layout,
        "policy": name,
        "seeds": "{}-{}".format(*summary["seeds"]),
        "successes": summary.get("successes"),
        "episodes": summary["episodes"],
        "success_rate": summary.get("success_rate"),
        "interval": summary.get("success_interval_95"),
        "final_distance": summary.get("mean_final_distance"),
        "seconds_per_episode": summary["seconds_per_episode"],
        "seconds_per_plan": summary["seconds_per_plan"],
        "checkpoint": summary.get("checkpoint"),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| env | wall | policy | seeds | success (95% CI) | final dist. | s / episode | s / plan |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["success_rate"] is None:
            success = "-"
        else:
            low, high = r["interval"]
            success = f"**{r['success_rate']:.0%}** ({r['successes']}/{r['episodes']}, {low:.0%}-{high:.0%})"
        distance = "-" if r["final_distance"] is None else f"{r['final_distance']:.1f}"
        lines.append(
            f"| {r['env']} | {r['layout']} | {r['policy']} | {r['seeds']} | {success} | {distance} | "
            f"{r['seconds_per_episode']:.1f} | {r['seconds_per_plan']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="sweep folders, run folders or results.json files")
    parser.add_argument("--json", default=None, help="also write the rows as JSON lines here")
    args = parser.parse_args()
    rows = [row(json.loads(path.read_text())) for path in results_files(args.paths)]
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()

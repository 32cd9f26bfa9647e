#!/usr/bin/env bash
# The PointMaze planning rows of BENCHMARKS.md: the jointly trained world model of `python launch/train.py
# +experiment=pointmaze_wm` (outputs/pointmaze_wm) planning with the shipped configs (configs/plan_pointmaze_wm.yaml,
# planner/*_pointmaze.yaml), UMaze, 300 control steps, success within 0.45 of the goal at the end, episodes 1000-1039
# (the planner settings were chosen on episodes 0-19), with random actions and the scripted oracle on the same
# episodes. Two jobs at a time, one torch thread each (a 2-core CPU); then the table.
#
#     bash benchmarks/planning_pointmaze.sh [OUT_DIR] [extra plan.py overrides, e.g. checkpoint=...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/plan_pointmaze}
shift || true
mkdir -p "$OUT"
PLAN_BASE=(--config-name plan_pointmaze_wm)
EXTRA=("$@")
# shellcheck source=benchmarks/plan_jobs.sh
source benchmarks/plan_jobs.sh
run umaze-mppi planner=mppi_pointmaze & run umaze-cem planner=cem_pointmaze & wait
run umaze-gradient planner=gradient_pointmaze & run umaze-random policy=random & wait
run umaze-oracle policy=oracle
python benchmarks/planning_table.py "$OUT"

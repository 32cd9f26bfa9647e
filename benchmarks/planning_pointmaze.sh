#!/usr/bin/env bash
# The PointMaze planning rows of BENCHMARKS.md: the jointly trained world model of `python launch/train.py
# +experiment=pointmaze_wm` (outputs/pointmaze_wm) planning with the shipped configs (configs/plan_pointmaze_wm.yaml,
# planner/*_pointmaze.yaml), UMaze, 300 control steps, success within 0.45 of the goal at the end, episodes 1000-1039
# (the planner settings were chosen on episodes 0-19), with random actions and the scripted oracle on the same
# episodes. Two jobs at a time, one torch thread each (a 2-core CPU); then the table. MAZE=Medium runs the same rows
# on Medium (configs/plan_pointmaze_medium_wm.yaml: +experiment=pointmaze_medium_wm's model, 600 control steps).
#
#     [MAZE=Medium] bash benchmarks/planning_pointmaze.sh [OUT_DIR] [extra plan.py overrides, e.g. checkpoint=...]
set -euo pipefail
cd "$(dirname "$0")/.."
MAZE=${MAZE:-UMaze}
case $MAZE in
  UMaze) PLAN_BASE=(--config-name plan_pointmaze_wm) ;;
  Medium) PLAN_BASE=(--config-name plan_pointmaze_medium_wm) ;;
  *) echo "MAZE must be UMaze or Medium, got '$MAZE'" >&2 && exit 2 ;;
esac
maze=${MAZE,,}
OUT=${1:-outputs/plan_pointmaze}
shift || true
mkdir -p "$OUT"
EXTRA=("$@")
# shellcheck source=benchmarks/plan_jobs.sh
source benchmarks/plan_jobs.sh
run "$maze-mppi" planner=mppi_pointmaze & run "$maze-cem" planner=cem_pointmaze & wait
run "$maze-gradient" planner=gradient_pointmaze & run "$maze-random" policy=random & wait
run "$maze-oracle" policy=oracle
python benchmarks/planning_table.py "$OUT"

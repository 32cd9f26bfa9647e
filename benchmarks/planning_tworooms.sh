#!/usr/bin/env bash
# The Two Rooms planning rows of BENCHMARKS.md: the jointly trained world model of `python launch/train.py
# +experiment=tworooms_wm` (outputs/tworooms_wm) planning with the shipped configs (configs/plan.yaml, planner/*),
# eb_jepa's protocol (200 steps, success < 4.5 px), episodes 1000-1059 (plan.yaml's seed and episodes; the planner
# settings were chosen on episodes 0-9), random walls and the fixed wall (CEM and MPPI on both, the gradient planner
# on random walls), with random actions and the scripted oracle on the same episodes. Two jobs at a time, one torch
# thread each (a 2-core CPU); then the table.
#
#     bash benchmarks/planning_tworooms.sh [OUT_DIR] [extra plan.py overrides, e.g. checkpoint=...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/plan_tworooms}
shift || true
mkdir -p "$OUT"
PLAN_BASE=()
EXTRA=("$@")
# shellcheck source=benchmarks/plan_jobs.sh
source benchmarks/plan_jobs.sh
run random-cem planner=cem & run random-mppi planner=mppi & wait
run random-gradient planner=gradient & run fixed-cem planner=cem env.fixed_layout=true & wait
run fixed-mppi planner=mppi env.fixed_layout=true &
{
  run random-random policy=random && run random-oracle policy=oracle
  run fixed-random policy=random env.fixed_layout=true && run fixed-oracle policy=oracle env.fixed_layout=true
} &
wait
python benchmarks/planning_table.py "$OUT"

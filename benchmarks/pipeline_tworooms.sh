#!/usr/bin/env bash
# The whole Two Rooms pipeline as a user runs it after `pip install -e ".[dev]"`, each stage timed: the README's two
# commands with their defaults (torch's own thread count, i.e. every core), nothing else on the machine.
#   data      none stored: `data=tworooms_walks` draws a new wall per clip inside training (its time is in training)
#   training  python launch/train.py +experiment=tworooms_wm run_name=<RUN>
#   planning  python launch/plan.py checkpoint=<RUN>'s last.ckpt: the shipped planner, episodes 1000-1059, random walls
# Writes OUT/stages.md (wall time per stage, then planning_table.py's row: success with its 95 % interval, time per
# episode); the training resumes if its run folder exists.
#
#     bash benchmarks/pipeline_tworooms.sh [OUT_DIR] [RUN_NAME]   # default: outputs/pipeline_tworooms, pipeline_tworooms
#
# Environment: TRAIN_ARGS and PLAN_ARGS, extra overrides (a smoke run: TRAIN_ARGS="trainer.max_steps=5"
# PLAN_ARGS="episodes=1"); the published stage times use neither.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/pipeline_tworooms}
RUN=${2:-pipeline_tworooms}
read -r -a TRAIN_EXTRA <<< "${TRAIN_ARGS:-}"
read -r -a PLAN_EXTRA <<< "${PLAN_ARGS:-}"
mkdir -p "$OUT"
stage() {  # stage NAME command...: run the command, log to OUT/NAME.log, append its wall time to OUT/times.tsv
  local name=$1 start
  shift
  start=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  printf '%s\t%s\n' "$name" "$(($(date +%s) - start))" >> "$OUT/times.tsv"
}
rm -f "$OUT/times.tsv"
stage training python launch/train.py +experiment=tworooms_wm "run_name=$RUN" "${TRAIN_EXTRA[@]}"
stage planning python launch/plan.py "checkpoint=outputs/$RUN/checkpoints/last.ckpt" "output_dir=$OUT/planning" \
  "${PLAN_EXTRA[@]}"
{
  echo "| stage | wall time (min) |"
  echo "| --- | --- |"
  echo "| data (generated inside training) | 0 |"
  awk -F'\t' '{ printf "| %s | %.1f |\n", $1, $2 / 60; total += $2 } END { printf "| total | %.1f |\n", total / 60 }' \
    "$OUT/times.tsv"
  echo
  python benchmarks/planning_table.py "$OUT/planning"
} | tee "$OUT/stages.md"

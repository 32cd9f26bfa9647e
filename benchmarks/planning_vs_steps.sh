#!/usr/bin/env bash
# Success against training steps: one planner over the checkpoints a `tworooms_wm` run keeps (stepNNNNNNNN.ckpt), on the
# published episodes (plan.yaml: 1000-1059, random walls), two jobs at a time with one torch thread each, then the
# table. Intermediate checkpoints are points of the one run's schedule (warm-up, cosine, faded regulariser), not
# shorter runs.
#
#     bash benchmarks/planning_vs_steps.sh [RUN_DIR] [OUT_DIR] [STEPS...]   # default: outputs/tworooms_wm, MPPI,
#                                                                           # every kept checkpoint of the run
#
# PLAN_ARGS replaces the planner choice (default "planner=mppi"): PointMaze's world model, for one,
#     PLAN_ARGS="--config-name plan_pointmaze_wm planner=cem_pointmaze" bash benchmarks/planning_vs_steps.sh \
#         outputs/pointmaze_wm outputs/plan_pm_vs_steps 500 1000 1500
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-outputs/tworooms_wm}
OUT=${2:-outputs/plan_vs_steps}
shift 2 || shift $#
if (($#)); then
  STEPS=("$@")
else  # the run's own checkpoints, so the default follows its max_steps and checkpoint interval
  mapfile -t STEPS < <(find "$RUN/checkpoints" -name 'step*.ckpt' -printf '%f\n' 2> /dev/null |
    sed -E 's/^step0*([0-9]+)\.ckpt$/\1/' | sort -n)
  if ((${#STEPS[@]} == 0)); then
    echo "no stepNNNNNNNN.ckpt in $RUN/checkpoints: train the run first, or name the STEPS to plan" >&2
    exit 1
  fi
fi
read -r -a PLAN <<< "${PLAN_ARGS:-planner=mppi}"
mkdir -p "$OUT"
run() {  # run STEP: the planner on the checkpoint of that step
  local ckpt
  ckpt=$(printf "%s/checkpoints/step%08d.ckpt" "$RUN" "$1")
  python launch/plan.py "${PLAN[@]}" threads=1 "checkpoint=$ckpt" "output_dir=$OUT/step$1" > "$OUT/step$1.log" 2>&1
}
for ((i = 0; i < ${#STEPS[@]}; i += 2)); do
  run "${STEPS[i]}" &
  if ((i + 1 < ${#STEPS[@]})); then run "${STEPS[i + 1]}" & fi
  wait
done
for s in "${STEPS[@]}"; do
  printf "step %5s  " "$s"
  python -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['successes']}/{r['episodes']} ({100*r['success_rate']:.0f}%, 95% {100*r['success_interval_95'][0]:.0f}-{100*r['success_interval_95'][1]:.0f}%), final distance {r['mean_final_distance']:.2f}\")" "$OUT/step$s/results.json"
done

#!/usr/bin/env bash
# The whole Two Rooms pipeline as a user runs it after `pip install -e ".[dev]"`, each stage timed: the README's two
# commands with their defaults (torch's own thread count, i.e. every core), nothing else on the machine.
#   data      none stored: `data=tworooms_walks` draws a new wall per clip inside training (its time is in training)
#   training  python launch/train.py +experiment=tworooms_wm run_name=<RUN>
#   planning  python launch/plan.py checkpoint=<RUN>'s last.ckpt: the shipped planner, episodes 1000-1059, random walls
# Writes OUT/stages.md (wall time per stage and the success rate); the training resumes if its run folder exists.
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
python - "$OUT" << 'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
times = dict(line.split("\t") for line in (out / "times.tsv").read_text().splitlines())
result = json.loads((out / "planning" / "results.json").read_text())
low, high = result["success_interval_95"]
rows = [
    "| stage | wall time (min) |",
    "| --- | --- |",
    "| data (generated inside training) | 0 |",
    *(f"| {name} | {int(seconds) / 60:.1f} |" for name, seconds in times.items()),
    f"| total | {sum(map(int, times.values())) / 60:.1f} |",
    "",
    f"success {100 * result['success_rate']:.0f} % ({result['successes']}/{result['episodes']}, "
    f"{100 * low:.0f}-{100 * high:.0f} %), {result['seconds_per_episode']:.1f} s per episode",
]
(out / "stages.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
EOF

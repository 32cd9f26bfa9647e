#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md's Two Rooms planning table, in one run (about 6 minutes on one H100).
# Needs the CPU-trained models at their default paths:
#   python launch/train.py +experiment=tworooms_ac                                # outputs/tworooms_ac
#   python launch/train_energy_head.py                                           # outputs/tworooms_energy
#   python launch/train_energy_head.py --config-name energy_head_random_wall     # outputs/tworooms_energy_random_wall
# Usage: bash benchmarks/planning_gpu.sh [OUT_DIR]  -> OUT_DIR/planning_gpu.jsonl, OUT_DIR/episodes.log
# Each row runs in its own process with its own time limit (BUDGET seconds in all), so one slow row costs only itself.
set -u -o pipefail
out=${1:-.}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
AC=outputs/tworooms_ac/checkpoints/last.ckpt
FIXED=outputs/tworooms_energy/energy_head.ckpt
RANDOM=outputs/tworooms_energy_random_wall/energy_head.ckpt
end=$(($(date +%s) + ${BUDGET:-380}))
row() { # row NAME SECONDS ARGS...: one benchmark process, its table rows printed, its episodes logged
  local name=$1 limit=$2 left=$((end - $(date +%s)))
  shift 2
  [ "$left" -lt 20 ] && { echo "skip $name: out of time"; return; }
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name ($limit s) $*"
  timeout "$limit" python3 benchmarks/planning.py --checkpoint $AC --device cuda --latent-weight 300 \
    --json "$out/planning_gpu.jsonl" "$@" 2>"$out/$name.tmp" | grep "^| [fr]"
  sed "s/^/$name: /" "$out/$name.tmp" >>"$out/episodes.log" && rm "$out/$name.tmp"
}
nvidia-smi -L
row fixed_cem 100 --energy-head $FIXED --layouts fixed --policies cem --episodes 20
row random_cem 90 --energy-head $RANDOM --layouts random --policies cem,random,oracle --episodes 20
row random_mppi 90 --energy-head $RANDOM --layouts random --policies mppi --temperature 1.0 --episodes 20
row random_cem_20_39 90 --energy-head $RANDOM --layouts random --policies cem --episodes 20 --first-seed 20
row fixed_mppi 90 --energy-head $FIXED --layouts fixed --policies mppi --temperature 1.0 --episodes 20

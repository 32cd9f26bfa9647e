#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md's training-step table, in one run (at most 9.5 minutes on one H100).
# Usage: bash benchmarks/train_step_gpu.sh [OUT_DIR]   -> OUT_DIR/train_step_gpu.jsonl (one JSON line per config)
# Each config runs in its own process with its own time limit, so a slow compile or an OOM costs only that row.
set -u -o pipefail
out=${1:-.}/train_step_gpu.jsonl
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
step() {  # step SECONDS ARGS...: one benchmark process, its JSON line appended to $out
  local limit=$1
  shift
  echo "== $*" >&2
  timeout "$limit" python3 benchmarks/train_step.py --frames 16 --precision bf16 --steps 5 --warmup 2 "$@" |
    tee -a "$out" || echo "{\"failed\": \"$*\", \"limit_s\": $limit}" | tee -a "$out"
}
nvidia-smi -L >&2
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' >&2
step 90 --encoder vit_large --res 256 --batch 24 --count-flops
step 150 --encoder vit_large --res 256 --batch 16 --max-batch
step 45 --encoder vit_small --res 224 256 --batch 32
step 45 --encoder vit_large --res 224 --batch 24
# compiled, at the largest batch the eager search found (should it not fit compiled, only this row fails)
max=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(r[1].get("batch", 24))' "$out")
step 220 --encoder vit_large --res 256 --batch "$max" --compile

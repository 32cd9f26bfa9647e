#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md's training-step table, in one run (at most 9.5 minutes on one H100).
# Usage: bash benchmarks/train_step_gpu.sh [OUT_DIR]   -> OUT_DIR/train_step_gpu.jsonl (one JSON line per config)
# Each config runs in its own process with its own time limit, so a slow compile or an OOM costs only that row.
# benchmarks/train_step.py composes launch/train.py's config: every row is the trainer's own step.
set -u -o pipefail
out=${1:-.}/train_step_gpu.jsonl
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
step() { # step SECONDS ARGS...: one benchmark process, its JSON line appended to $out
  local limit=$1
  shift
  echo "== $*" >&2
  timeout "$limit" python3 benchmarks/train_step.py --steps 5 --warmup 2 trainer=gpu "$@" |
    tee -a "$out" || echo "{\"failed\": \"$*\", \"limit_s\": $limit}" | tee -a "$out"
}
nvidia-smi -L >&2
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' >&2
step 90 --count-flops +experiment=vjepa2_large data.batch_size=24 compile=false
step 150 --max-batch +experiment=vjepa2_large data.batch_size=16 compile=false
step 45 +experiment=vjepa2_small encoder.img_size=224 data.batch_size=32 compile=false
step 45 +experiment=vjepa2_small encoder.img_size=256 data.batch_size=32 compile=false
step 45 +experiment=vjepa2_large encoder.img_size=224 data.batch_size=24 compile=false
# compiled (whole modules, the default), at the largest batch the eager search found (should it not fit, only this row fails)
max=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(r[1].get("batch", 24))' "$out")
step 220 +experiment=vjepa2_large data.batch_size="$max" compile=true

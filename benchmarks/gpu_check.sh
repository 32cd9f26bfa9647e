#!/usr/bin/env bash
# The trainer on one GPU, in one call of under 8 minutes, everything written under $OUT:
#   1. shards from real footage with data/make_shards.py (bikes.mp4, cockatoo.mp4);
#   2. `launch/train.py +experiment=vjepa2_large trainer=gpu` (bf16, compiled, fixed token counts, cuDNN benchmark)
#      for 100 steps, saving at step 100; then the same command with max_steps=120 resumes from that checkpoint;
#   3. the FSDP preset on one GPU for 10 steps, and `jepa.checkpoints.load_encoder` on its checkpoint;
#   4. benchmarks/train_step.py on the same config and batch (compiled; eager last, if time is left), beside the
#      trainer's perf/clips_per_s (summary.json: the ratio, the resume step, the FSDP load).
# Training compiles block by block (compile_scope=blocks): a whole-model ViT-L compile takes about 5 minutes.
# Needs .gpu_check/ from `bash benchmarks/gpu_check_prepare.sh` (wheels of what the GPU image lacks, the footage).
#   OUT=/some/dir bash benchmarks/gpu_check.sh           # on the GPU machine
#   OUT=/tmp/smoke bash benchmarks/gpu_check.sh --smoke  # anywhere: the same steps on a tiny model on the CPU
#                                                        # (FSDP only composed), to check the script end to end
set -u -o pipefail
smoke=0
[[ ${1:-} == --smoke ]] && smoke=1
out=${OUT:-$PWD/outputs/gpu_check}
work=${GPU_CHECK_WORK:-/tmp/gpu_check}
mkdir -p "$out" "$work"
exec > >(tee -a "$out/gpu_check.log") 2>&1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 WANDB_MODE=disabled HYDRA_FULL_ERROR=1
t0=$(date +%s)
left() { echo $((480 - ($(date +%s) - t0))); }
step() { # step NAME SECONDS CMD...: run CMD with a time limit (never past the 8-minute budget), log its status
  local name=$1 limit=$2
  shift 2
  ((limit > $(left) - 5)) && limit=$(($(left) - 5))
  if ((limit < 20)); then echo "== $name: skipped, $(left) s left" && return 1; fi
  echo "== $name (limit ${limit}s, $(left)s left): $*"
  timeout "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - t0))s in all"
  return $rc
}

if ! python3 -c 'import hydra, omegaconf, webdataset, av' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$work/site" .gpu_check/wheels/*.whl || exit 1
  export PYTHONPATH=$work/site:$PYTHONPATH
fi
nvidia-smi -L 2>/dev/null
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")'

step shards 60 python3 data/make_shards.py .gpu_check/footage --out "$work/shards" --clip-seconds 4 --overwrite || exit 1
common=(+experiment=vjepa2_large "data.shards=$work/shards/manifest.json" "paths.output_dir=$work/runs" logger=csv
  "~callbacks.progress" trainer.enable_progress_bar=false trainer.log_every_n_steps=1)
steps=100 resumed=120 fsdp_steps=10 bench_steps=(--steps 10 --warmup 3)
gpu=(trainer=gpu compile_scope=blocks data.num_workers=12)
if ((smoke)); then
  steps=4 resumed=6 fsdp_steps=2 bench_steps=(--steps 1 --warmup 1)
  gpu=(trainer=cpu encoder.embed_dim=48 encoder.depth=2 encoder.num_heads=2 encoder.img_size=64 encoder.num_frames=4
    predictor.predictor_embed_dim=32 predictor.depth=1 predictor.num_heads=2 data.batch_size=2 data.num_workers=2)
fi
run=(python3 launch/train.py "${common[@]}" "${gpu[@]}" run_name=bf16 callbacks.checkpoint.every_n_train_steps=$steps)
step train 200 "${run[@]}" trainer.max_steps=$steps
cp "$work/runs/bf16/csv/metrics.csv" "$out/train_metrics.csv" # a resumed run's CSVLogger deletes it (PITFALLS 13)
step resume 70 "${run[@]}" trainer.max_steps=$resumed
cp "$work/runs/bf16/csv/metrics.csv" "$out/resume_metrics.csv"

bench=(python3 benchmarks/train_step.py "${bench_steps[@]}" +experiment=vjepa2_large "${gpu[@]}")
step bench-compiled 70 "${bench[@]}" | tee -a "$out/bench.jsonl"

fsdp=(python3 launch/train.py "${common[@]}" trainer=fsdp trainer.devices=1 compile=false run_name=fsdp
  trainer.max_steps=$fsdp_steps callbacks.checkpoint.every_n_train_steps=$fsdp_steps data.num_workers=12)
if ((smoke)); then
  step fsdp-compose 60 "${fsdp[@]}" "${gpu[@]:1}" --cfg job | grep -E "FSDPStrategy|sharding_strategy|precision"
else
  step fsdp 70 "${fsdp[@]}" && cp "$work/runs/fsdp/csv/metrics.csv" "$out/fsdp_metrics.csv"
fi
step bench-eager 40 "${bench[@]}" compile=false | tee -a "$out/bench.jsonl"

python3 - "$work/runs" "$out" $steps $resumed <<'EOF'
import csv, json, statistics, sys
from pathlib import Path
import torch
runs, out, steps, resumed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def rows(path):
    return list(csv.DictReader(open(path))) if Path(path).is_file() else []
def global_step(path):
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"] if Path(path).is_file() else None
train = [(int(r["step"]), float(r["perf/clips_per_s"])) for r in rows(out / "train_metrics.csv") if r.get("perf/clips_per_s")]
late = [v for s, v in train if s >= steps // 3]  # after compilation and the loader's start
resumed_steps = [int(r["step"]) for r in rows(out / "resume_metrics.csv") if r.get("train/loss")]
bench = [json.loads(l) for l in open(out / "bench.jsonl") if l.startswith("{")] if (out / "bench.jsonl").is_file() else []
summary = {
    "train_steps_logged": len(train),
    "train_perf_clips_per_s_median": statistics.median(late) if late else None,
    "bench": [{k: b.get(k) for k in ("compile", "batch", "step_s", "clips_per_s", "mfu", "of_measured_gemm", "peak_memory_gb")} for b in bench],
    "checkpoint_step_first_run": global_step(runs / "bf16" / "checkpoints" / f"step{steps:08d}.ckpt"),
    "resumed_first_logged_step": min(resumed_steps) if resumed_steps else None,
    "checkpoint_step_after_resume": global_step(runs / "bf16" / "checkpoints" / "last.ckpt"),
}
if late and bench and bench[0].get("clips_per_s"):
    summary["trainer_over_benchmark"] = round(summary["train_perf_clips_per_s_median"] / bench[0]["clips_per_s"], 3)
fsdp_ckpt = runs / "fsdp" / "checkpoints" / "last.ckpt"
if fsdp_ckpt.is_file():
    from jepa.checkpoints import load_encoder
    enc = load_encoder(fsdp_ckpt)
    summary["fsdp"] = {"global_step": global_step(fsdp_ckpt), "load_encoder_embed_dim": enc.embed_dim}
print(json.dumps(summary, indent=1))
json.dump(summary, open(out / "summary.json", "w"), indent=1)
EOF
echo "== done in $(($(date +%s) - t0)) s"

#!/usr/bin/env bash
# One prepared command for a CUDA machine (random weights: no network, no weights needed):
#   1. smoke (< 3 min): CUDA vs CPU vectors of M1 (fp32 tight, bf16 tolerance), one step of the real Trainer
#      on M1 shapes (fp32 master weights + bf16 autocast), NCCL DDP over the GPUs present (torchrun, one
#      rank per GPU; a 1-rank NCCL group on one GPU);
#   2. the full benchmark (bench_gpu.py): matmul peak, encode throughput, the Trainer's step at batch 128,
#      MFU against the datasheet peak (989 TFLOP/s dense bf16 on H100/H200) and the measured matmul peak.
# Options: --smoke (step 1 only), --dry-run (print the commands, run nothing), --tiny (the tiny model, for
# CPU tests); other arguments go to bench_gpu.py. Python: $PYTHON, else `python`, else `python3`.
# Results: $OUT (or benchmarks/results/gpu)/{smoke,ddp,gpu}.json and gpu.md. Exit 1 if any step failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/results/gpu}"
work="${WORK:-/tmp/audiovec-gpu}"
smoke_only=0 dry_run=0 tiny=()
bench_args=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke_only=1 ;;
    --dry-run) dry_run=1 ;;
    --tiny) tiny=(--tiny) ;;
    *) bench_args+=("$arg") ;;
  esac
done

py="${PYTHON:-}"
if [ -z "$py" ]; then
  if command -v python >/dev/null 2>&1; then py=python
  elif command -v python3 >/dev/null 2>&1; then py=python3
  else echo "gpu.sh: neither python nor python3 is on PATH (or set PYTHON)" >&2; exit 2
  fi
fi
export PYTHONPATH="$here/../src:$here${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

if [ -n "${GPU_COUNT:-}" ]; then gpus="$GPU_COUNT"
elif [ "$dry_run" = 1 ]; then gpus=0
else gpus="$("$py" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)"
fi
nproc=$(( gpus > 0 ? gpus : 1 ))
backend=$([ "$gpus" -gt 0 ] && echo nccl || echo gloo)

status=0
run() {  # print the command; run it unless --dry-run; remember a failure but go on
  echo "+ $*"
  [ "$dry_run" = 1 ] && return 0
  "$@" || { echo "gpu.sh: failed ($?): $*" >&2; status=1; }
}

echo "gpu.sh: python=$py gpus=$gpus ddp=$nproc rank(s) on $backend out=$out work=$work"
[ "$dry_run" = 1 ] || { mkdir -p "$out" "$work"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true; }
run timeout 130 "$py" "$here/gpu_smoke.py" "${tiny[@]}" --out-dir "$out" --work-dir "$work"
run timeout 50 "$py" -m torch.distributed.run --standalone --nproc_per_node "$nproc" "$here/gpu_smoke.py" --ddp \
  --out-dir "$out" --work-dir "$work/ddp"
if [ "$smoke_only" = 0 ]; then
  model=$([ "${#tiny[@]}" -gt 0 ] && echo tiny || echo m1)
  # the smoke step's fp32 folder, reused; the script stops starting new work after --budget-s
  run timeout 360 "$py" "$here/bench_gpu.py" "${tiny[@]}" --out-dir "$out" --work-dir "$work" \
    --model-dir "$work/$model-fp32" --budget-s 300 "${bench_args[@]}"
fi
[ "$dry_run" = 1 ] || rm -rf "$work/m1-fp32"
exit "$status"

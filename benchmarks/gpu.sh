#!/usr/bin/env bash
# M1 at full size on one GPU (random bf16 weights, no network, no weights needed): encode throughput,
# a batch-128 training step with peak memory, and MFU. Results: $OUT (or benchmarks/results/gpu)/gpu.{json,md}.
# Extra arguments go to bench_gpu.py (e.g. --all-configs, --tiny).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/results/gpu}"
export PYTHONPATH="$here/../src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
# hard stop at 7.5 min; the script itself stops starting new work after --budget-s (default 420 s)
timeout 450 python "$here/bench_gpu.py" --out-dir "$out" "$@"

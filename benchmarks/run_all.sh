#!/usr/bin/env bash
# Run every CPU benchmark in turn (one at a time: they measure speed). `--quick` (CI) runs each at reduced
# size and writes benchmarks/results/<name>_quick.json; other arguments go to every script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
for script in bench_logmel.py bench_encode.py bench_options.py bench_pipeline.py bench_train_step.py bench_search.py bench_builtin_load.py long_audio_parity.py; do
  echo "=== $script $*"
  python "$here/$script" "$@"
done

#!/usr/bin/env bash
# The pinned minimum versions really work: a fresh venv with the lowest transformers that pyproject.toml admits
# (and torch 2.13.0, the lowest torch this CI can install) runs the tower, compose, checkpoint-layout and
# public-config parity tests. The main CI run covers the newest releases. Runs in about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tmp=$(mktemp -d)
start=$(date +%s)
trap 'rm -rf "$tmp"' EXIT
# the lower bound of the transformers requirement, read from pyproject.toml (one source of truth)
min_tf=$(python3 - <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(re.fullmatch(r"transformers>=([\d.]+)", d).group(1) for d in deps if d.startswith("transformers")))
EOF
)
others=$(python3 - <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if re.match(r"(torch|transformers)\b", d) is None))
EOF
)
python3 -m venv "$tmp/venv"
pip="$tmp/venv/bin/pip"
"$pip" install -q torch==2.13.0
echo "venv + torch: $(( $(date +%s) - start )) s"
"$pip" install -q "transformers==$min_tf"
# shellcheck disable=SC2086  # one word per requirement
"$pip" install -q $others pytest pytest-timeout hypothesis peft
"$pip" install -q --no-deps -e .
echo "installs: $(( $(date +%s) - start )) s"
# (checked after every install: peft must not have pulled a newer transformers in)
"$tmp/venv/bin/python" - <<EOF
import torch, transformers
from packaging.version import Version
assert Version(transformers.__version__) == Version("$min_tf"), transformers.__version__
print(f"minimum versions: torch {torch.__version__}, transformers {transformers.__version__}")
EOF
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$root/tests/ground/test_towers.py" "$root/tests/build/test_compose.py" "$root/tests/build/test_checkpoint_layouts.py" \
  "$root/tests/build/test_checkpoints.py"
echo "minimum versions: ok"

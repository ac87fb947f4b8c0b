#!/usr/bin/env bash
# A plain install without extras, as `pip install audiovec` gives a user: every command's --help works and a
# command that needs an extra fails with one line naming `pip install 'audiovec[...]'`.
set -euo pipefail
root=$(pwd)
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q .
cd "$(mktemp -d)"  # not the checkout: the installed package only
"$venv/bin/audiovec" --help > /dev/null
for cmd in encode compose prune export push data train eval report index search classify route serve demo; do
  "$venv/bin/audiovec" "$cmd" --help > /dev/null
done
set +e
err=$("$venv/bin/audiovec" encode "$root/data/fsdd/recordings/0_george_0.wav" --out v.npy 2>&1 >/dev/null); code=$?
set -e
echo "plain install, built-in model without its extra: exit $code: $err"
[ "$code" -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && printf '%s' "$err" | grep -q "pip install 'audiovec\[pretrained\]'"
echo "base install: ok"

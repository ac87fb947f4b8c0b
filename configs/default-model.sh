#!/usr/bin/env bash
# Trains and packages audiovec's built-in model `audiovec-sounds` (issue 13): the demo's recipe on the large
# real-sound corpus, longer. Seed fixed; about 40 minutes on 2 CPU cores once the corpus is built (~5 min,
# ~4 GB of Debian packages, cached). Run from the repository root:
#   bash configs/default-model.sh [RUN_DIR]
# FSDD: uses $AUDIOVEC_FSDD (the full dataset) when set, else the 600-file subset in data/fsdd.
set -euo pipefail
run=${1:-runs/default-model}
audiovec demo --out "$run" --corpus-size large --steps 3000 --minutes 0 --seed 0
python -m audiovec.build.pretrained "$run" src/audiovec/builtin/audiovec-sounds

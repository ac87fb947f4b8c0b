"""``python -m audiovec.train RECIPE.yaml [--key value ...] [--resume]`` — the same as ``audiovec train``,
in a form torchrun can launch: ``torchrun --nproc_per_node 2 -m audiovec.train RECIPE.yaml``."""

from __future__ import annotations

import sys

from audiovec.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

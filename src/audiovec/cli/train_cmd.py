"""``audiovec train RECIPE.yaml [--key value ...] [--resume]``: run a training recipe (torchrun-ready)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe (single process or under torchrun)",
        description=(
            "Train with symmetric InfoNCE from a YAML recipe. Override any field with --section.key value "
            "(or --key value when the name is unique, e.g. --lr 3e-4 --steps 50; dashes work as underscores). "
            "Per-module learning rates: --tower-lr and --backbone-lr (numbers >= 0; default: --lr), "
            "--new-lr for the projector and temperature. Matryoshka sizes: --matryoshka-dims auto (full, 1/2, "
            "1/4, 1/8) or 384,192,96 (docs/compact-vectors.md). Launch several processes "
            "with `torchrun --nproc_per_node N -m audiovec.train RECIPE.yaml`."
        ),
        epilog=(
            "examples: audiovec train configs/m1.yaml --tower-lr 1e-3 --backbone-lr 2e-5; "
            "audiovec train configs/m1.yaml --resume"
        ),
    )
    parser.add_argument("recipe", help="recipe YAML file (see configs/)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in output.dir"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved recipe and exit")
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="--section.key value pairs that override the recipe"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.train.config import load_recipe, parse_overrides

    overrides = list(args.overrides or [])
    for flag in ("--resume", "--dry-run"):  # also accepted after the overrides
        while flag in overrides:
            overrides.remove(flag)
            setattr(args, flag[2:].replace("-", "_"), True)
    recipe = load_recipe(args.recipe, parse_overrides(overrides))
    if args.dry_run:
        print(json.dumps(recipe.to_dict(), indent=2))
        return 0
    from audiovec.train.trainer import train

    summary = train(recipe, resume=args.resume)
    if summary.get("model"):
        losses = summary["losses"]
        tail = f", last loss {losses[-1]:.4f}" if losses else ""
        print(f"trained {summary['steps']} steps{tail}; model saved to {summary['model']}")
    return 0

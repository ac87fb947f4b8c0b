"""``audiovec prune``: keep only some backbone layers of a saved audiovec model."""

from __future__ import annotations

import argparse

from audiovec.cli.compose_cmd import parse_layers
from audiovec.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prune",
        help="drop backbone layers of a saved model",
        description="Keep N backbone layers (or the listed indices), renumber them and fix the config.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="an audiovec model folder")
    p.add_argument("--keep-layers", required=True, metavar="N|I,J,..", help="a count, or layer indices")
    p.add_argument("--strategy", default="first", choices=["first", "last", "uniform"], help="for a count")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.build.prune import prune

    keep = parse_layers(args.keep_layers)
    if keep is None:
        raise ConfigError("--keep-layers is required")
    strategy = args.strategy if isinstance(keep, int) else "custom"
    result = prune(args.model_dir, args.out, keep, strategy=strategy, overwrite=args.overwrite)
    print(
        f"kept layers {result.kept_layers} of {result.num_layers_before}; "
        f"{result.tensors_dropped} tensors dropped; wrote {result.out}"
    )
    return 0

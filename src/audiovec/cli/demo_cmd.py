"""``audiovec demo``: build the real-sound corpus, compose Whisper tiny.en + MiniLM, train, evaluate on
held-out real sources, index, report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audiovec.demo.options import DemoOptions

SIZES = ("small", "default", "large")  # = audiovec.demo.corpus.build.SIZES


def register(subparsers: argparse._SubParsersAction) -> None:
    from audiovec.demo.options import DemoOptions

    d = DemoOptions()
    p = subparsers.add_parser(
        "demo", help="the main job, offline on a CPU: real-sound corpus → compose → train → eval → search"
    )
    p.add_argument(
        "--out", type=Path, default=d.out, help=f"output folder (default {d.out}); DIR/model is the model"
    )
    p.add_argument("--corpus-size", choices=SIZES, default=d.corpus_size,
                   help="small: ~80 MB of Debian packages (CI); default: every labelled package (~4 GB, cached); "
                   "large: more synthetic and FSDD clips")  # fmt: skip
    p.add_argument("--packages", nargs="+", metavar="PKG", help="use only these Debian packages")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default {d.steps})")
    p.add_argument("--minutes", type=float, default=d.minutes,
                   help=f"cap on training wall time in minutes; stops early and saves (default {d.minutes:g})")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--trainable", default=d.trainable,
                   choices=["audio_adapter", "projector", "frozen_tower", "full", "lora"],
                   help="what trains (default audio_adapter: text keeps the pretrained MiniLM space)")  # fmt: skip
    p.add_argument("--min-seconds", type=float, default=d.min_seconds, help="pad short clips with silence")
    p.add_argument("--augment-variants", type=int, default=d.augment_variants, metavar="N",
                   help="versions of each training clip, the recorded one included: the others with random "
                   "level, noise, room reverb and band limit (default 0: off; e.g. 3)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a small, fast run (CI): small corpus, 200 steps")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """The demo's settings from parsed arguments (``--quick`` applied)."""
    from audiovec.demo.options import DemoOptions

    options = DemoOptions(
        out=args.out, corpus_size=args.corpus_size, packages=args.packages, steps=args.steps,
        minutes=args.minutes, batch_size=args.batch_size, seed=args.seed, trainable=args.trainable,
        min_seconds=args.min_seconds, augment_variants=args.augment_variants, progress=not args.no_progress,
    )  # fmt: skip
    if args.quick:  # a fixed number of steps (not a time budget), so CI measures the same run everywhere
        options.corpus_size = "small"
        options.steps, options.minutes = min(options.steps, 200), 15.0
    return options


def run(args: argparse.Namespace) -> int:
    from audiovec.demo.run import print_summary, run_demo

    print_summary(run_demo(options_from_args(args)))
    return 0

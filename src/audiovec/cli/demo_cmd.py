"""``audiovec demo``: build a corpus, compose Whisper tiny.en + MiniLM, train, evaluate, index, report."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from audiovec.demo import DemoOptions

    d = DemoOptions()
    p = subparsers.add_parser(
        "demo", help="the main job, offline on a CPU: corpus → compose → train → eval → search"
    )
    p.add_argument(
        "--out", type=Path, default=d.out, help=f"output folder (default {d.out}); DIR/model is the model"
    )
    p.add_argument("--clips", type=int, default=d.clips, help="corpus size (80/20 train/test)")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps")
    p.add_argument(
        "--minutes", type=float, default=d.minutes, help="training time budget (stops early, saves)"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--trainable", default=d.trainable, choices=["full", "frozen_tower", "projector", "lora"])
    p.add_argument("--min-seconds", type=float, default=d.min_seconds, help="pad short clips with silence")
    p.add_argument("--quick", action="store_true", help="a small, fast run (CI): 150 clips, 40 steps")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.demo import DemoOptions, print_summary, run_demo

    options = DemoOptions(
        out=args.out, clips=args.clips, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
        seed=args.seed, trainable=args.trainable, min_seconds=args.min_seconds, progress=not args.no_progress,
    )  # fmt: skip
    if args.quick:
        options.clips, options.steps, options.minutes = (
            min(options.clips, 150),
            min(options.steps, 40),
            min(options.minutes, 3.0),
        )
    print_summary(run_demo(options))
    return 0

"""``--engine ray`` for ``audiovec encode`` / ``audiovec index``: the shared options and the two runs
(:mod:`audiovec.ray_engine` does the work; imported only when the engine is chosen, so ``--help`` stays fast)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audiovec.apps.index import IndexReport


def add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine (--engine ray: Ray Data, for collections beyond one machine)")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (or torchrun ranks); ray: Ray Data actors (pip install 'audiovec[ray]')",
    )
    g.add_argument("--workers", type=int, default=2, help="Ray: actors, one model each (default 2)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray: CPUs per actor (default 1)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per actor (default 0)")
    g.add_argument("--files-per-call", type=int, default=8, help="Ray: files per actor call (default 8)")
    g.add_argument("--ray-address", default=None, help="Ray: cluster address (default: RAY_ADDRESS or local)")


def _config(args: argparse.Namespace):
    from audiovec.ray_engine import EngineConfig

    return EngineConfig(
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        files_per_call=args.files_per_call,
        batch_size=args.batch_size,
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
        address=args.ray_address,
    )


def run_encode(args: argparse.Namespace, model: str, inputs: list[str]) -> int:
    """``encode --engine ray``: Parquet parts under ``--out`` (a folder), resumable."""
    from audiovec.ray_engine import encode_files

    report = encode_files(model, inputs, args.out, _config(args))
    for reason in sorted(report.failed.values()):
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"{report.summary()} -> {args.out}/part-*.parquet", file=sys.stderr)
    return 1 if report.failed else 0


def run_index(args: argparse.Namespace, model: str, paths: list[str]) -> IndexReport | int:
    """``index --engine ray``: the same LanceDB index, embedded by Ray actors; its report (an exit code
    when the arguments are refused)."""
    from audiovec.ray_engine import index_files

    if getattr(args, "dim", None) is not None or getattr(args, "precision", None) not in (None, "float32"):
        print(
            "audiovec index: --dim and --precision are not supported with --engine ray yet", file=sys.stderr
        )
        return 2

    return index_files(
        model,
        paths,
        args.db,
        _config(args),
        window_seconds=args.window,
        batch_files=args.batch_files,
        ann_threshold=args.ann_threshold,
        rebuild=args.rebuild,
        ann_kind=getattr(args, "ann", None),
    )


def print_index_report(report: object, as_json: bool) -> int:
    """What `audiovec index` prints after a run (either engine): the summary and each failed file."""
    if as_json:
        print(json.dumps(report.__dict__, indent=2))
        return 0
    print(report.summary())  # type: ignore[attr-defined]
    for path, reason in sorted(report.failed.items()):  # type: ignore[attr-defined]
        print(f"  failed: {path}: {reason}")
    return 0

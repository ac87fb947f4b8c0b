"""``audiovec index [MODEL] PATH... --db DIR``: embed audio files window by window into a LanceDB index (the
built-in model when no model is given)."""

from __future__ import annotations

import argparse

from audiovec.cli.engine_args import add_engine_args, print_index_report, run_index
from audiovec.cli.models import add_inputs_and_model, split_model

DEFAULT_ANN_THRESHOLD = (
    50_000  # = audiovec.apps.index.DEFAULT_ANN_THRESHOLD (not imported: keeps --help fast)
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="index audio files (one row per window) for search")
    add_inputs_and_model(p, "paths", "PATH", "audio files or folders (searched recursively)")
    p.add_argument("--db", required=True, help="index folder (created if missing)")
    p.add_argument("--window", type=float, default=None, help="window length in seconds (model default: 30)")
    p.add_argument("--batch-files", type=int, default=16, help="files per commit (default 16)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument(
        "--ann-threshold",
        type=int,
        default=DEFAULT_ANN_THRESHOLD,
        help=f"build an ANN index from this many rows (default {DEFAULT_ANN_THRESHOLD})",
    )
    p.add_argument("--rebuild", action="store_true", help="replace an index built by another model")
    p.add_argument(
        "--dim",
        type=int,
        default=None,
        help="store vectors truncated to this size (Matryoshka; queries must match; default: the model's)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "int8", "binary"),
        default=None,
        help="search a quantised copy and re-score the best candidates with floats (default float32)",
    )
    p.add_argument(
        "--ann",
        choices=("hnsw", "lancedb"),
        default=None,
        help="hnsw: keep a usearch HNSW graph beside the table (any size; ~6 ms at 1M rows); lancedb: drop "
        "it for LanceDB's own IVF-HNSW index past --ann-threshold (default: whichever the index uses)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.apps.index import AudioIndex
    from audiovec.model import AudioTextEmbedder

    name, paths = split_model(args, args.paths)
    if args.engine == "ray":
        report = run_index(args, name, paths)
        return report if isinstance(report, int) else print_index_report(report, args.json)
    model = AudioTextEmbedder.from_pretrained(name)
    report = AudioIndex(args.db).add(
        model,
        paths,
        model_dir=name,
        window_seconds=args.window,
        batch_files=args.batch_files,
        batch_size=args.batch_size,
        ann_threshold=args.ann_threshold,
        rebuild=args.rebuild,
        dim=args.dim,
        precision=args.precision,
        ann_kind=args.ann,
    )
    return print_index_report(report, args.json)

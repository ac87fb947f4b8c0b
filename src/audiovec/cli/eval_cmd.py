"""``audiovec eval``: retrieval metrics of a model on manifests and local benchmarks."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from audiovec import __version__
from audiovec.builtin_models import is_builtin
from audiovec.cli.models import DEFAULT_MODEL, HELP
from audiovec.errors import ConfigError
from audiovec.evaluation.report import results_table
from audiovec.model_card import update_card

log = logging.getLogger(__name__)

DEFAULT_SHOW = "hit_rate@1,hit_rate@5,hit_rate@10,ndcg@10"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="text↔audio retrieval metrics on manifests and benchmarks",
        description=(
            "Embed the clips and captions of each manifest or benchmark and report retrieval metrics in "
            "both directions (t2a: every caption is a query for its clip; a2t: every clip for its captions). "
            "hit_rate@k is the seed's cvR@k. Embeddings are cached per model and file."
        ),
    )
    parser.add_argument("model", nargs="?", default=None, help=HELP)
    parser.add_argument(
        "--manifest", action="append", default=[], metavar="FILE", help="JSONL manifest (repeatable)"
    )
    parser.add_argument(
        "--benchmark",
        default="",
        metavar="NAMES",
        help="comma-separated: audiocaps, clotho, audioset-strong (needs --data-root)",
    )
    parser.add_argument(
        "--data-root",
        metavar="DIR",
        help="folder holding audiocaps/, clotho/, audioset_strong/ (official or MTEB layout)",
    )
    parser.add_argument("--split", help="benchmark split (default: each benchmark's test split)")
    parser.add_argument("--json", dest="json_out", metavar="FILE", help="write all metrics as JSON")
    parser.add_argument("--name", help="model name in the table and JSON (default: the folder name)")
    parser.add_argument("--ks", default="1,5,10", help="cut-offs, comma-separated (default 1,5,10)")
    parser.add_argument(
        "--show", default=DEFAULT_SHOW, help=f"metrics in the printed table (default {DEFAULT_SHOW})"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="audio batch size (text uses 4x)")
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="embedding cache (default ~/.cache/audiovec/embeddings)"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    parser.add_argument("--device", help="torch device, e.g. cuda or cpu")
    parser.add_argument("--dtype", help="weights dtype, e.g. bfloat16")
    parser.add_argument(
        "--update-card", action="store_true", help="write the metrics into the model folder's README.md card"
    )
    parser.set_defaults(func=run)


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{what}: need positive integers, got {text!r}")
    return values


def collect_sets(args: argparse.Namespace) -> list[Any]:
    from audiovec.evaluation.retrieval_sets import from_manifest, load_benchmark

    sets = [from_manifest(path) for path in args.manifest]
    names = [n.strip() for n in args.benchmark.split(",") if n.strip()]
    if names and not args.data_root:
        raise ConfigError("--benchmark needs --data-root DIR")
    sets += [load_benchmark(name, args.data_root, args.split) for name in names]
    if not sets:
        raise ConfigError(
            "nothing to evaluate: give --manifest FILE and/or --benchmark NAMES --data-root DIR"
        )
    return sets


def run(args: argparse.Namespace) -> int:
    from audiovec.evaluation.evaluate import evaluate, model_fingerprint
    from audiovec.model import AudioTextEmbedder

    ks = _int_list(args.ks, "--ks")
    sets = collect_sets(args)
    args.model = args.model or DEFAULT_MODEL
    model = AudioTextEmbedder.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    results = evaluate(
        model,
        sets,
        ks=ks,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        audio_batch_size=args.batch_size,
        text_batch_size=4 * args.batch_size,
    )
    run_record = {
        "model": args.name or (args.model if is_builtin(args.model) else Path(args.model).resolve().name),
        "model_path": args.model if is_builtin(args.model) else str(Path(args.model).resolve()),
        "fingerprint": model_fingerprint(model),
        "audiovec_version": __version__,
        "ks": ks,
        "results": results,
    }
    show = [m.strip() for m in args.show.split(",") if m.strip()]
    print(results_table([run_record], show, markdown=False, chance=True))
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(run_record, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    if args.update_card:
        print(f"updated {update_card(args.model, run_record, model)}", file=sys.stderr)
    return 0

"""``audiovec search --db DIR "text"`` or ``--audio query.wav``: top-k windows with score, path and span."""

from __future__ import annotations

import argparse
import json

from audiovec.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="search an index by text or by an audio clip")
    p.add_argument("query", nargs="?", help="text query")
    p.add_argument("--db", required=True, help="index folder written by `audiovec index`")
    p.add_argument("--audio", help="audio query file (audio-to-audio search)")
    p.add_argument("--model", help="model folder (default: the one that built the index)")
    p.add_argument("-k", "--top-k", type=int, default=10, help="results to return (default 10)")
    p.add_argument("--nprobes", type=int, help="ANN partitions to search (default: 1/8 of them, >= 20)")
    p.add_argument("--ef", type=int, help="HNSW candidates per partition (default: max(300, 20 x top-k))")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.apps.index import AudioIndex, embed_source, load_index_model

    if (args.query is None) == (args.audio is None):
        raise ConfigError("give either a text query or --audio FILE")
    index = AudioIndex.open(args.db)
    model = load_index_model(index, args.model)
    if args.audio:
        vector = embed_source(model, args.audio, index.meta().get("window_seconds"))
    else:
        vector = model.encode_text(args.query)
    hits = index.search(index.query_vector(vector), args.top_k, nprobes=args.nprobes, ef=args.ef)
    if args.json:
        print(json.dumps([h.to_json() for h in hits], indent=2))
        return 0
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:3d}  {hit.score:.4f}  {hit.start:8.2f}-{hit.end:<8.2f}  {hit.path}")
    return 0

"""``audiovec route MODEL --routes routes.yaml FILE...``: the best route per utterance, or none."""

from __future__ import annotations

import argparse
import json

from audiovec.cli.models import add_inputs_and_model, split_model
from audiovec.errors import AudioDecodeError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("route", help="route utterances to intents defined by examples")
    add_inputs_and_model(p, "files", "FILE", "audio files")
    p.add_argument("--routes", required=True, help="routes YAML file")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.apps.routing import Router
    from audiovec.model import AudioTextEmbedder

    name, args.files = split_model(args, args.files)
    model = AudioTextEmbedder.from_pretrained(name)
    router = Router.from_yaml(model, args.routes)
    records, failed = [], 0
    for path in args.files:
        try:
            records.append({"path": path, **router.route(path).to_json()})
        except AudioDecodeError as exc:
            failed += 1
            records.append({"path": path, "error": str(exc)})
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for rec in records:
            if "error" in rec:
                print(f"{rec['path']}\terror: {rec['error']}")
            else:
                print(f"{rec['path']}\t{rec['route'] or 'none'}\t{rec['score']:.4f}")
    return 1 if failed else 0

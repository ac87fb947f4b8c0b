"""``audiovec classify MODEL --labels "dog,siren" FILES``: zero-shot labels with prompt ensembling."""

from __future__ import annotations

import argparse
import json
import sys

from audiovec.cli.models import add_inputs_and_model, split_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("classify", help="zero-shot classification of audio files")
    add_inputs_and_model(p, "files", "FILE", "audio files")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--labels", help="comma-separated labels")
    group.add_argument("--labels-file", help="file with one label per line")
    p.add_argument("--top-k", type=int, default=3, help="labels to show per file (default 3)")
    p.add_argument("--template", action="append", help="prompt template with {} (repeatable)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.apps.classify import DEFAULT_TEMPLATES, ZeroShotClassifier, parse_labels
    from audiovec.model import AudioTextEmbedder

    labels = parse_labels(args.labels, args.labels_file)
    name, args.files = split_model(args, args.files)
    model = AudioTextEmbedder.from_pretrained(name)
    classifier = ZeroShotClassifier(model, labels, args.template or DEFAULT_TEMPLATES)
    result = model.encode_audio_detailed(args.files, on_error="skip")
    ok = [i for i in range(len(args.files)) if i not in result.errors]
    predictions = dict(zip(ok, classifier.classify_vectors(result.vectors[ok]))) if ok else {}
    records = []
    for i, path in enumerate(args.files):
        if i in result.errors:
            records.append({"path": path, "error": result.errors[i]})
        else:
            records.append({"path": path, **predictions[i].to_json(args.top_k)})
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for rec in records:
            if "error" in rec:
                print(f"{rec['path']}: error: {rec['error']}", file=sys.stderr)
                continue
            top = ", ".join(f"{t['label']} {t['prob']:.3f}" for t in rec["top"])
            print(f"{rec['path']}\t{rec['label']}\t({top})")
    return 1 if result.errors else 0

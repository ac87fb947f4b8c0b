"""``audiovec data sounds`` (build the real-audio corpus) and ``audiovec data labels`` (check a label table);
``audiovec.cli.data_cmd`` calls :func:`register`."""

from __future__ import annotations

import argparse
import json

SIZES = ("small", "default", "large")  # = audiovec.demo.corpus.build.SIZES (not imported: keeps --help light)


def register(subparsers: argparse._SubParsersAction) -> None:
    sounds = subparsers.add_parser(
        "sounds",
        help="build the real-audio corpus: curated Debian sounds, FSDD, synthetic supplement",
        description="Download (never install) the allow-listed Debian sound packages, keep the files their "
        "curated label tables describe, caption them, add FSDD recordings and the synthetic supplement, and "
        "hold out whole sources for a development benchmark. Writes DIR/train.jsonl, DIR/heldout.jsonl "
        "(real held-out sources), DIR/synthetic_test.jsonl and DIR/corpus.json; downloads are cached and a "
        "complete corpus is reused.",
    )
    sounds.add_argument("--out", required=True, metavar="DIR", help="output folder")
    sounds.add_argument("--size", choices=SIZES, default="default", help="small: a few tiny packages (CI); "
                        "default: every labelled package (~4 GB of downloads); large: more synthetic and FSDD")  # fmt: skip
    sounds.add_argument("--packages", nargs="+", metavar="PKG", help="use only these Debian packages")
    sounds.add_argument("--seed", type=int, default=0)
    sounds.add_argument("--fsdd", metavar="DIR", help="FSDD recordings/ folder (default: $AUDIOVEC_FSDD, "
                        "the full dataset beside the checkout, or the subset in the repository)")  # fmt: skip
    sounds.add_argument(
        "--cache", metavar="DIR", help="where .deb files are kept (default ~/.cache/audiovec/debian)"
    )
    sounds.add_argument("--no-progress", action="store_true")
    sounds.set_defaults(func=_sounds)

    labels = subparsers.add_parser(
        "labels",
        help="check a Debian package's label table against the package's files",
        description="Download the package (cached) and show how its label table treats every sound file: "
        "clips per rule, dropped files and why, files no rule matches, categories.",
    )
    labels.add_argument("package")
    labels.add_argument("--cache", metavar="DIR", help="where .deb files are kept")
    labels.add_argument("--examples", type=int, default=2, help="example files per rule (default 2)")
    labels.set_defaults(func=_labels)


def _sounds(args: argparse.Namespace) -> int:
    from audiovec.demo.corpus.build import build_corpus

    result = build_corpus(
        args.out, size=args.size, seed=args.seed, packages=args.packages, fsdd_dir=args.fsdd,
        cache_dir=args.cache, progress=not args.no_progress,
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


def _labels(args: argparse.Namespace) -> int:
    from collections import Counter
    from pathlib import Path

    from audiovec.demo.corpus import debian
    from audiovec.demo.corpus.build import default_cache_dir
    from audiovec.demo.corpus.labels import coverage, load_table

    table = load_table(args.package)
    cache = Path(args.cache) if args.cache else default_cache_dir()
    deb = debian.download([args.package], cache)[args.package]
    paths = [m.path for m in debian.iter_members(args.package, deb, cache)]
    report = coverage(table, paths)
    print(
        f"{args.package}: {len(paths)} sound files, {report['kept']} kept, {len(report['unmatched'])} unmatched"
    )
    for i, rule in enumerate(table.rules):
        hits = report["per_rule"].get(i, [])
        what = f"drop: {rule.drop}" if rule.drop else f"{', '.join(rule.labels)} ({rule.kind or table.kind})"
        print(f"  rule {i:3d}  {len(hits):5d}  {rule.match[0]}  ->  {what}")
        for path in hits[: args.examples]:
            print(f"                e.g. {path}")
    for path in report["unmatched"]:
        print(f"  unmatched: {path}")
    kept = [label for p in paths if (label := table.label(p)) is not None]
    print("categories:", dict(Counter(k.category for k in kept)))
    return 1 if report["unmatched"] else 0

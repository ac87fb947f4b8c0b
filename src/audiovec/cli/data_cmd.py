"""``audiovec data``: prepare manifests from official dataset layouts, inspect and filter them."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from audiovec.data.exclude import apply_exclusions
from audiovec.data.manifest import manifest_stats, read_manifest, write_manifest
from audiovec.data.prepare import DATASETS, prepare_dataset
from audiovec.demo.corpus.cli import register as register_sounds
from audiovec.demo.synth.cli import register as register_synth
from audiovec.errors import DataError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prepare and inspect training manifests")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    prep = sub.add_parser(
        "prepare",
        help="build a manifest from a dataset's official download",
        description="Read a dataset in its official on-disk layout and write a JSONL manifest.",
    )
    prep.add_argument("name", metavar="NAME", help=f"one of: {', '.join(DATASETS)}")
    prep.add_argument("--src", required=True, help="folder holding the dataset as distributed")
    prep.add_argument("--out", required=True, help="manifest to write (.jsonl)")
    prep.add_argument(
        "--split",
        action="append",
        dest="splits",
        metavar="SPLIT",
        help="split(s) to include (repeatable); default: the training splits, never a test split",
    )
    prep.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FILE",
        help="manifest or id list whose clips must not appear (repeatable)",
    )
    prep.add_argument("--exclude-by-hash", action="store_true", help="also exclude identical audio bytes")
    prep.add_argument("--no-durations", action="store_true", help="do not read durations from file headers")
    prep.add_argument("--strict", action="store_true", help="fail on the first listed clip without audio")
    prep.set_defaults(func=_prepare)

    stats = sub.add_parser(
        "stats", help="validate a manifest and print counts (exit 1 when audio files are missing)"
    )
    stats.add_argument("manifest")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.add_argument("--no-check-files", action="store_true", help="do not check that audio files exist")
    stats.set_defaults(func=_stats)

    excl = sub.add_parser("exclude", help="drop rows of a manifest that appear in exclusion files")
    excl.add_argument("manifest")
    excl.add_argument("--exclude", action="append", required=True, metavar="FILE")
    excl.add_argument("--exclude-by-hash", action="store_true")
    excl.add_argument("--out", required=True)
    excl.set_defaults(func=_exclude)

    nli = sub.add_parser("nli", help="text pairs for modality transfer from SNLI/MultiNLI JSONL files")
    nli.add_argument("inputs", nargs="+", help="official *_train.jsonl files")
    nli.add_argument("--out", required=True, help="text-pair JSONL to write")
    nli.add_argument(
        "--require-negative", action="store_true", help="keep only triplets with a contradiction"
    )
    nli.set_defaults(func=_nli)

    pair_modes = (
        "retrieval (default): claim -> each evidence text, supporting or refuting alike; "
        "nli: evidence text -> a claim it supports, negative a claim it refutes (see docs/data.md)"
    )
    fever = sub.add_parser(
        "fever",
        help="text pairs for modality transfer from FEVER claims and its Wikipedia dump",
        description="Pair FEVER claims with their evidence sentences read from the wiki-pages dump.",
    )
    fever.add_argument("claims", nargs="+", metavar="CLAIMS", help="train.jsonl, shared_task_dev.jsonl, ...")
    fever.add_argument("--wiki", required=True, metavar="DIR", help="the wiki-pages folder (wiki-*.jsonl)")
    fever.add_argument("--out", required=True, help="text-pair JSONL to write")
    fever.set_defaults(func=_fever)
    scifact = sub.add_parser(
        "scifact",
        help="text pairs for modality transfer from SciFact claims and corpus",
        description="Pair SciFact claims with their rationale sentences read from corpus.jsonl.",
    )
    scifact.add_argument(
        "--claims", nargs="+", required=True, metavar="FILE", help="claims_train.jsonl, claims_dev.jsonl"
    )
    scifact.add_argument("--corpus", required=True, help="corpus.jsonl")
    scifact.add_argument("--out", required=True, help="text-pair JSONL to write")
    scifact.set_defaults(func=_scifact)
    for cmd in (fever, scifact):
        cmd.add_argument("--mode", choices=("retrieval", "nli"), default="retrieval", help=pair_modes)
        cmd.add_argument("--no-titles", action="store_true", help="do not prefix evidence with its title")
        cmd.add_argument(
            "--require-negative", action="store_true", help="(--mode nli) keep only rows with a negative"
        )

    register_sounds(sub)
    register_synth(sub)


def _prepare(args: argparse.Namespace) -> int:
    rows = prepare_dataset(
        args.name,
        args.src,
        args.out,
        splits=args.splits,
        exclude=args.exclude,
        exclude_by_hash=args.exclude_by_hash,
        durations=not args.no_durations,
        strict=args.strict,
    )
    stats = manifest_stats(rows, check_files=False)
    print(
        f"{args.out}: {stats['rows']} clips, {stats['captions']} captions, {stats['hours']} h, splits {stats['splits']}"
    )
    return 0


def _stats(args: argparse.Namespace) -> int:
    stats = manifest_stats(read_manifest(args.manifest), check_files=not args.no_check_files)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        width = max(len(k) for k in stats)
        for key, value in stats.items():
            print(f"{key:<{width}}  {value}")
    return 1 if stats.get("missing_audio") else 0


def _exclude(args: argparse.Namespace) -> int:
    kept, dropped = apply_exclusions(read_manifest(args.manifest), args.exclude, by_hash=args.exclude_by_hash)
    write_manifest(kept, args.out)
    print(f"{args.out}: kept {len(kept)}, excluded {len(dropped)}")
    return 0


def _nli(args: argparse.Namespace) -> int:
    from audiovec.data.prepare.nli_pairs import nli_to_pairs
    from audiovec.data.text_pairs import write_text_pairs

    count = write_text_pairs(nli_to_pairs(args.inputs, require_negative=args.require_negative), args.out)
    print(f"{args.out}: {count} text pairs")
    return 0


def _pair_options(args: argparse.Namespace) -> dict | None:
    """Keyword arguments shared by ``fever`` and ``scifact``; None (after a message) when inconsistent."""
    if args.require_negative and args.mode != "nli":
        print(
            f"audiovec data {args.data_command}: error: --require-negative needs --mode nli", file=sys.stderr
        )
        return None
    return {"mode": args.mode, "titles": not args.no_titles, "require_negative": args.require_negative}


def _fever(args: argparse.Namespace) -> int:
    from audiovec.data.prepare.fever import fever_to_pairs
    from audiovec.data.text_pairs import write_text_pairs

    options = _pair_options(args)
    if options is None:
        return 2
    rows, counts = fever_to_pairs(args.claims, args.wiki, **options)
    if not rows:
        raise DataError(f"no text pairs from {', '.join(args.claims)} with --wiki {args.wiki}: {counts}")
    write_text_pairs(rows, args.out)
    print(
        f"{args.out}: {counts['rows']} text pairs ({args.mode}) from {counts['claims']} claims "
        f"(SUPPORTS {counts['supports']}, REFUTES {counts['refutes']}, "
        f"NOT ENOUGH INFO {counts['not_enough_info']} without evidence); {counts['claims_used']} claims used"
    )
    print(
        f"evidence sets: {counts['evidence_sets']}, skipped {counts['missing_page']} (page not in the dump), "
        f"{counts['missing_sentence']} (sentence missing or empty)"
    )
    return 0


def _scifact(args: argparse.Namespace) -> int:
    from audiovec.data.prepare.scifact import scifact_to_pairs
    from audiovec.data.text_pairs import write_text_pairs

    options = _pair_options(args)
    if options is None:
        return 2
    rows, counts = scifact_to_pairs(args.claims, args.corpus, **options)
    if not rows:
        raise DataError(f"no text pairs from {', '.join(args.claims)} with --corpus {args.corpus}: {counts}")
    write_text_pairs(rows, args.out)
    print(
        f"{args.out}: {counts['rows']} text pairs ({args.mode}) from {counts['claims']} claims "
        f"({counts['no_evidence']} without evidence); {counts['claims_used']} claims used"
    )
    print(
        f"rationales: {counts['rationales']} (SUPPORT {counts['support']}, CONTRADICT {counts['contradict']}), "
        f"skipped {counts['missing_doc']} (document not in the corpus), "
        f"{counts['missing_sentence']} (sentence index out of range or empty)"
    )
    return 0

"""``audiovec data synth``: the argument parser; ``audiovec.cli.data_cmd`` calls :func:`register`."""

from __future__ import annotations

import argparse
import json

DEFAULT_N = 600  # = audiovec.demo.synth.corpus.DEFAULT_N (not imported: --help must not need the demo extra)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``synth`` sub-command to the ``audiovec data`` group."""
    parser = subparsers.add_parser(
        "synth",
        help="build a small real audio-text corpus offline (speech, instruments, events, FSDD, scenes)",
        description="Build a deterministic audio-text corpus from pip-installable sources: eSpeak NG speech, "
        "General MIDI instruments, synthesised sound events, Free Spoken Digit Dataset recordings and "
        "scenes mixing them. Writes DIR/audio/*.wav, DIR/train.jsonl, DIR/test.jsonl and DIR/corpus.json; "
        "re-running with the same arguments reuses a complete corpus.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"number of clips (default {DEFAULT_N})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--fsdd", metavar="DIR", help="FSDD recordings/ folder (default: $AUDIOVEC_FSDD, else the 600-file "
                        "subset in the repository's data/fsdd)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the corpus and print where it is."""
    from audiovec.demo.synth.corpus import build_corpus

    result = build_corpus(
        args.out,
        n=args.n,
        seed=args.seed,
        fsdd_dir=args.fsdd,
        progress=not args.no_progress,
    )
    print(json.dumps(result, indent=2))
    return 0

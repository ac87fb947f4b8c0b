"""``audiovec compose``: pair the audio tower of one checkpoint with the LLM of another."""

from __future__ import annotations

import argparse
import json

from audiovec.errors import ConfigError

# = audiovec.pooling.POOLING_MODES, spelled out so that ``audiovec --help`` does not import torch
# (tests/cli/test_cli_base_install.py checks they agree)
POOLING_MODES = ("mean", "last", "cls", "max")


def parse_layers(text: str | None) -> int | list[int] | None:
    """``"10"`` → 10 (a count); ``"0,2,5"`` → [0, 2, 5] (explicit indices)."""
    if text is None:
        return None
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part.strip()]
        return int(text)
    except ValueError:
        raise ConfigError(
            f"layers must be a count (10) or a comma-separated list (0,2,5), got {text!r}"
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compose",
        help="build a model from one checkpoint's audio tower and another's LLM",
        description="Module combination: audio tower of --audio-encoder + LLM of --llm → an audiovec model. "
        "Sources are local folders (Hugging Face layout), hub ids, CTranslate2 Whisper folders, or "
        "public:<name> for the shipped configs (dry runs).",
    )
    p.add_argument("--audio-encoder", required=True, metavar="SRC", help="checkpoint holding the audio tower")
    p.add_argument("--llm", required=True, metavar="SRC", help="checkpoint holding the language model")
    p.add_argument("--out", metavar="DIR", help="output folder (must not exist unless --overwrite)")
    p.add_argument("--llm-layers", metavar="N|I,J,..", help="keep N backbone layers, or these layer indices")
    p.add_argument("--layer-strategy", default="first", choices=["first", "last", "uniform"])
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="output dtype (default: the LLM's)")
    p.add_argument("--dry-run", action="store_true", help="configs only: print the parameter breakdown")
    p.add_argument("--json", action="store_true", help="print the parameter counts as one JSON object")
    p.add_argument(
        "--pooling",
        default=None,
        choices=POOLING_MODES,
        help="default: what a sentence-transformers folder says, else mean",
    )
    p.add_argument("--projector-downsample", type=int, default=1, metavar="K")
    p.add_argument("--window-seconds", type=float, default=30.0)
    p.add_argument(
        "--min-seconds",
        type=float,
        default=0.0,
        help="pad shorter clips with silence to this duration before the tower (helps Whisper towers)",
    )
    p.add_argument("--seed", type=int, default=0, help="projector initialisation seed")
    p.add_argument("--allow-pickle", action="store_true", help="accept pickle (.bin/.pt) weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.build.compose import REPORT_NAME, compose, format_counts, format_report

    if not args.dry_run and not args.out:
        raise ConfigError("--out is required (or pass --dry-run)")
    result = compose(
        args.audio_encoder,
        args.llm,
        args.out,
        llm_layers=parse_layers(args.llm_layers),
        layer_strategy=args.layer_strategy,
        dtype=args.dtype,
        dry_run=args.dry_run,
        pooling=args.pooling,
        projector_downsample=args.projector_downsample,
        window_seconds=args.window_seconds,
        min_seconds=args.min_seconds,
        seed=args.seed,
        allow_pickle=args.allow_pickle,
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps({k: int(v) for k, v in result.counts.items()}))
    elif args.dry_run:
        print(format_counts(result.counts))
    else:
        print(format_report(result.report))
        print(f"wrote {result.out} (details in {REPORT_NAME})")
    return 0

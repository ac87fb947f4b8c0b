"""Which model a command uses: an explicit model wins (``--model``, or a first positional argument that is a
model folder or a built-in name); otherwise the built-in default model that ships with audiovec."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from audiovec.builtin_models import DEFAULT_MODEL, is_builtin

HELP = f"model folder or built-in model name (default: {DEFAULT_MODEL}, ships with audiovec)"


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help=HELP)


def add_inputs_and_model(parser: argparse.ArgumentParser, dest: str, metavar: str, what: str) -> None:
    """The positional inputs of a command whose model is optional: a leading model folder or built-in name
    among them is taken as ``--model`` (see ``cli.main``)."""
    parser.add_argument(
        dest,
        nargs="+",
        metavar=metavar,
        help=f"{what}; a leading model folder or built-in name is taken as --model",
    )
    add_model_option(parser)
    parser.set_defaults(collect_into=dest)


def is_model(text: str) -> bool:
    """A built-in model name, or a folder holding an audiovec model's config.json (cheap: reads one file)."""
    if is_builtin(text):
        return True
    config = Path(text) / "config.json"
    try:
        return json.loads(config.read_text()).get("architecture") == "AudioTextEmbedder"
    except (OSError, ValueError, AttributeError):
        return False


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".webm", ".aif", ".aiff")


def split_model(args: argparse.Namespace, items: list[str]) -> tuple[str, list[str]]:
    """``(model, the remaining positional items)``: a leading model folder/name is taken as the model (the
    ``audiovec index MODEL PATHS`` form), else ``--model``, else the built-in default. A leading item that
    does not exist, is not named like an audio file and is followed by more items is taken as a model too,
    so a mistyped model folder is reported as a missing model rather than silently replaced."""
    if items and getattr(args, "model", None) is None:
        first = items[0]
        missing = not Path(first).exists() and not first.lower().endswith(AUDIO_SUFFIXES)
        if is_model(first) or (missing and len(items) > 1):
            return first, items[1:]
    return args.model or DEFAULT_MODEL, items

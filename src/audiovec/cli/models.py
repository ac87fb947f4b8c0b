"""Which model a command uses: an explicit model wins (``--model``, or a first positional argument that is a
model folder or a built-in name); otherwise the built-in default model that ships with audiovec."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_MODEL = "audiovec-sounds"  # = audiovec.pretrained.DEFAULT_MODEL (not imported: keeps --help light)
HELP = f"model folder or built-in model name (default: {DEFAULT_MODEL}, ships with audiovec)"


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help=HELP)


def is_model(text: str) -> bool:
    """A built-in model name, or a folder holding an audiovec model's config.json (cheap: reads one file)."""
    from audiovec.pretrained import is_builtin

    if is_builtin(text):
        return True
    config = Path(text) / "config.json"
    try:
        return json.loads(config.read_text()).get("architecture") == "AudioTextEmbedder"
    except (OSError, ValueError, AttributeError):
        return False


def split_model(args: argparse.Namespace, items: list[str]) -> tuple[str, list[str]]:
    """``(model, the remaining positional items)``: a leading model folder/name is taken as the model (the
    older ``audiovec index MODEL PATHS`` form), else ``--model``, else the built-in default."""
    if items and is_model(items[0]) and getattr(args, "model", None) is None:
        return items[0], items[1:]
    return args.model or DEFAULT_MODEL, items

"""The ``audiovec`` command line. It only parses arguments and calls the library.

Each sub-command lives in its own module in this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from audiovec import __version__
from audiovec.errors import AudiovecError
from audiovec.extras import missing_extra

# module name -> registered lazily so `audiovec --help` stays fast and one broken extra
# (say, lancedb missing) does not break the other commands.
COMMAND_MODULES = [
    "encode",
    "compose",
    "prune",
    "export",
    "data",
    "train",
    "eval",
    "report",
    "index",
    "search",
    "classify",
    "route",
    "serve",
    "demo",
    "push",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiovec", description="Audio-text embeddings bootstrapped from multimodal LLMs."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"audiovec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"audiovec.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("audiovec.cli."):
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    collect = getattr(args, "collect_into", None)
    if extra and collect and not any(e.startswith("-") for e in extra):
        # `audiovec route MODEL --routes r.yaml a.wav b.wav`: argparse hands the files after an option back
        # as extras when the model is optional, since the first positional run took only MODEL
        getattr(args, collect).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # audiovec's own progress at INFO; other libraries only warn unless --verbose (huggingface_hub logs every
    # saved checkpoint, temporary folders included, at INFO)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    logging.getLogger("audiovec").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AudiovecError as exc:
        print(f"audiovec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, f"audiovec {args.command}")
        if error is None:
            raise
        print(f"audiovec {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

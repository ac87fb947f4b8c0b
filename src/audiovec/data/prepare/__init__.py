"""Turn the official on-disk distributions of audio-text datasets into manifests.

Each module reads one dataset's own layout and exposes ``SPLITS``, ``DEFAULT_SPLITS`` (training splits
only: test splits are never prepared by default) and ``prepare(src, splits, strict) -> list[Row]``.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from types import ModuleType

from audiovec.data.exclude import apply_exclusions
from audiovec.data.manifest import Row, write_manifest
from audiovec.data.prepare.common import finish_rows
from audiovec.errors import DataError

log = logging.getLogger(__name__)

DATASETS = ("audioset_strong", "fsd50k", "clotho", "urbansound8k", "macs", "audiocaps")
ALIASES = {"audiosetstrong": "audioset_strong", "audioset-strong": "audioset_strong", "us8k": "urbansound8k"}


def preparer(name: str) -> ModuleType:
    """The preparer module for a dataset name (case-insensitive, a few aliases)."""
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return importlib.import_module(f"audiovec.data.prepare.{key}")


def prepare_dataset(
    name: str,
    src: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    splits: list[str] | None = None,
    exclude: list[str | os.PathLike] | None = None,
    exclude_by_hash: bool = False,
    durations: bool = True,
    strict: bool = False,
) -> list[Row]:
    """Read ``src`` in the dataset's official layout, drop excluded rows, and write ``out`` if given."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    rows = preparer(name).prepare(src, splits=splits, strict=strict)
    if not rows:
        raise DataError(f"{src}: no {name} clips with audio were found; check --src and --split")
    rows, _dropped = apply_exclusions(rows, exclude or [], by_hash=exclude_by_hash)
    finish_rows(rows, durations=durations)
    if out is not None:
        write_manifest(rows, out)
        log.info("wrote %d rows to %s", len(rows), out)
    return rows

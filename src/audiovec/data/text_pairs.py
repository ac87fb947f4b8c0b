"""Text-only pairs for modality transfer: JSONL ``{"anchor", "positive", "negative"?}`` (NLI/FEVER style).

The seed's text-only transfer fine-tunes on MultiNLI, SNLI, FEVER and SciFact pairs and relies on the
model's pretrained cross-modal alignment. This module is the format (read, write, validate, batch); the
converters from NLI, FEVER and SciFact are one per dataset in :mod:`audiovec.data.prepare` (``nli_pairs``, ``fever``, ``scifact``).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from audiovec.data.manifest import iter_jsonl
from audiovec.errors import DataError

Pair = dict[str, Any]

log = logging.getLogger(__name__)

PAIR_MODES = ("retrieval", "nli")


def validate_pair(obj: object, where: str) -> Pair:
    """Check one text-pair row; ``where`` names the file and line in errors."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("anchor", "positive"):
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    negative = obj.get("negative")
    if negative is not None and (not isinstance(negative, str) or not negative.strip()):
        raise DataError(f"{where}: 'negative' must be a non-empty string when given, got {negative!r}")
    return dict(obj)


def read_text_pairs(path: str | os.PathLike) -> list[Pair]:
    """All rows of a text-pair JSONL file (blank lines skipped)."""
    return [validate_pair(obj, where) for where, obj in iter_jsonl(path, "text-pair file")]


def write_text_pairs(rows: Iterable[Pair], path: str | os.PathLike) -> int:
    """Validate and write rows atomically; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                count += 1
                handle.write(
                    json.dumps(validate_pair(row, f"{path} (row {count})"), ensure_ascii=False) + "\n"
                )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


class TextPairDataset(Dataset):
    """Rows of a text-pair file; ``collate_text_pairs`` batches them."""

    def __init__(self, source: str | os.PathLike | list[Pair]) -> None:
        self.rows = (
            [validate_pair(r, f"row {i}") for i, r in enumerate(source)]
            if isinstance(source, list)
            else read_text_pairs(source)
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Pair:
        return self.rows[index]


def collate_text_pairs(rows: list[Pair]) -> dict[str, Any]:
    """``anchors``/``positives`` lists; ``negatives`` (None where absent) with a ``has_negative`` mask."""
    negatives = [row.get("negative") for row in rows]
    return {
        "anchors": [row["anchor"] for row in rows],
        "positives": [row["positive"] for row in rows],
        "negatives": negatives,
        "has_negative": torch.tensor([n is not None for n in negatives], dtype=torch.bool),
    }


_MOVED = {  # converters moved to data/prepare/ (one per dataset); re-exported for one release
    "nli_to_pairs": "nli_pairs",
    "fever_to_pairs": "fever",
    "fever_wiki_files": "fever",
    "load_fever_sentences": "fever",
    "fever_detokenize": "claims",
    "fever_title": "claims",
    "FEVER_LABELS": "claims",
    "SCIFACT_LABELS": "claims",
    "scifact_to_pairs": "scifact",
    "load_scifact_corpus": "scifact",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"audiovec.data.prepare.{_MOVED[name]}"), name)
    raise AttributeError(name)

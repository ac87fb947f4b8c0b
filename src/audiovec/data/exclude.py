"""Contamination guard: drop training rows that also appear in an evaluation set.

An exclusion source is a manifest (``.jsonl``) or a plain id list (one entry per line; lines starting with ``#`` are comments).
A row is excluded when any of its *keys* is listed: its id, its audio file stem, and the namespaced
origin ids datasets share - ``yt:<YouTube id>`` (AudioCaps and AudioSet clips are the same videos) and
``fs:<Freesound id>`` (FSD50K, Clotho and UrbanSound8K all come from Freesound). Optionally, audio files
with identical bytes (SHA-256) are excluded too, which catches renamed copies.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from audiovec.data.manifest import Row, iter_manifest
from audiovec.errors import DataError

log = logging.getLogger(__name__)

ORIGIN_KEYS = {"youtube_id": "yt", "freesound_id": "fs"}


def row_keys(row: Row) -> set[str]:
    """The identifiers under which a row can collide with another dataset."""
    keys = {str(row["id"]), Path(str(row["audio"])).stem}
    for field_name, prefix in ORIGIN_KEYS.items():
        value = row.get(field_name)
        if value not in (None, ""):
            keys.add(f"{prefix}:{value}")
    return keys


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _looks_like_manifest(path: Path) -> bool:
    if path.suffix in {".jsonl", ".ndjson"}:
        return True
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


@dataclass
class Exclusion:
    """A set of keys (and optionally audio hashes) that training rows must not match."""

    keys: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike], *, by_hash: bool = False) -> Exclusion:
        """Load manifests and id lists; ``by_hash`` also hashes the audio of excluded manifests."""
        exclusion = cls()
        for path in paths:
            exclusion.add_file(path, by_hash=by_hash)
        return exclusion

    def add_file(self, path: str | os.PathLike, *, by_hash: bool = False) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: exclusion file not found (give a manifest .jsonl or an id list)")
        self.sources.append(str(path))
        if _looks_like_manifest(path):
            for row in iter_manifest(path):
                self.keys |= row_keys(row)
                if by_hash:
                    if Path(row["audio"]).is_file():
                        self.hashes.add(file_sha256(row["audio"]))
                    else:
                        log.warning("%s: cannot hash missing audio %s", path, row["audio"])
            return
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                entry = line.strip()
                if not entry or entry.startswith("#"):
                    continue
                if entry.startswith("{"):
                    raise DataError(f"{path}:{number}: JSON row in an id list; name the file *.jsonl")
                self.keys.add(entry)

    def matches(self, row: Row) -> bool:
        if row_keys(row) & self.keys:
            return True
        return bool(self.hashes) and Path(row["audio"]).is_file() and file_sha256(row["audio"]) in self.hashes

    def filter(self, rows: Iterable[Row]) -> tuple[list[Row], list[Row]]:
        """Split rows into (kept, excluded)."""
        kept: list[Row] = []
        dropped: list[Row] = []
        for row in rows:
            (dropped if self.matches(row) else kept).append(row)
        return kept, dropped

    def __bool__(self) -> bool:
        return bool(self.keys or self.hashes)


def apply_exclusions(
    rows: Iterable[Row], paths: Iterable[str | os.PathLike], *, by_hash: bool = False
) -> tuple[list[Row], list[Row]]:
    """Filter rows against exclusion files; returns (kept, excluded) and logs how many were dropped."""
    paths = list(paths)
    rows = list(rows)
    if not paths:
        return rows, []
    exclusion = Exclusion.from_files(paths, by_hash=by_hash)
    kept, dropped = exclusion.filter(rows)
    log.info("excluded %d of %d rows matching %s", len(dropped), len(rows), ", ".join(exclusion.sources))
    return kept, dropped


def write_id_list(rows: Iterable[Row], path: str | os.PathLike) -> None:
    """Write every key of the rows as an id list (a compact, shareable exclusion file)."""
    keys = sorted({key for row in rows for key in row_keys(row)})
    Path(path).write_text("".join(f"{key}\n" for key in keys), encoding="utf-8")

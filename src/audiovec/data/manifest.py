"""JSON Lines manifests: one audio clip per line with its captions.

A row is ``{"id"?, "audio", "captions": [...], "labels"?: [...], "source"?, ...}``. ``audio`` is a path
relative to the manifest's folder (or absolute); ``id`` defaults to that path as written; unknown keys are
kept untouched so datasets can carry their own metadata (splits, YouTube ids, event times).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from audiovec.errors import DataError

Row = dict[str, Any]


def validate_row(obj: object, where: str) -> Row:
    """Check one decoded manifest line; ``where`` ("file:line") is used in the error message."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    audio = obj.get("audio")
    if not isinstance(audio, str) or not audio.strip():
        raise DataError(f"{where}: 'audio' must be a non-empty path string, got {audio!r}")
    captions = obj.get("captions")
    if not isinstance(captions, list) or not captions:
        raise DataError(f"{where}: 'captions' must be a non-empty list of strings, got {captions!r}")
    for caption in captions:
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{where}: every caption must be a non-empty string, got {caption!r}")
    labels = obj.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels)
    ):
        raise DataError(f"{where}: 'labels' must be a list of non-empty strings, got {labels!r}")
    row_id = obj.get("id", audio)
    if not isinstance(row_id, str) or not row_id:
        raise DataError(f"{where}: 'id' must be a non-empty string, got {row_id!r}")
    for key in ("source", "split"):
        if key in obj and not isinstance(obj[key], str):
            raise DataError(f"{where}: {key!r} must be a string, got {obj[key]!r}")
    duration = obj.get("duration")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0
    ):
        raise DataError(f"{where}: 'duration' must be a non-negative number of seconds, got {duration!r}")
    row = dict(obj)
    row["id"] = row_id
    return row


def resolve_audio(audio: str, base: Path) -> str:
    """The absolute path of ``audio`` given the manifest folder ``base``."""
    path = Path(os.path.expanduser(audio))
    return os.path.normpath(path if path.is_absolute() else (base / path))


def iter_jsonl(path: str | os.PathLike, what: str = "file") -> Iterator[tuple[str, object]]:
    """``(where, object)`` for each non-blank line of a JSON Lines file; ``where`` is ``path:line``.

    A missing file or a line that is not JSON raises :class:`DataError` naming the file (and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None


def iter_manifest(path: str | os.PathLike, *, resolve: bool = True) -> Iterator[Row]:
    """Yield validated rows; with ``resolve`` the ``audio`` field becomes an absolute path.

    Blank lines are skipped. Raises :class:`DataError` naming the file and line of a bad row.
    """
    base = Path(path).resolve().parent
    for where, obj in iter_jsonl(path, "manifest"):
        row = validate_row(obj, where)
        if resolve:
            row["audio"] = resolve_audio(row["audio"], base)
        yield row


def read_manifest(path: str | os.PathLike, *, resolve: bool = True, unique_ids: bool = True) -> list[Row]:
    """All rows of a manifest (see :func:`iter_manifest`); duplicate ids are an error unless allowed."""
    rows = list(iter_manifest(path, resolve=resolve))
    if unique_ids:
        seen: dict[str, int] = {}
        for index, row in enumerate(rows):
            if row["id"] in seen:
                raise DataError(
                    f"{path}: id {row['id']!r} appears twice (rows {seen[row['id']] + 1} and {index + 1}); "
                    "give each row a unique 'id'"
                )
            seen[row["id"]] = index
    return rows


def _portable_audio(audio: str, base: Path) -> str:
    """Relative to ``base`` when the file lies inside it (the tree can then move as a whole), else as is."""
    path = Path(os.path.normpath(audio))
    if not path.is_absolute():
        return audio
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def write_manifest(rows: Iterable[Row], path: str | os.PathLike, *, relative: bool = True) -> int:
    """Write rows atomically (temp file + rename); audio inside the manifest's folder is made relative.

    Every row is validated first. Returns the number of rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    count = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                count += 1
                row = validate_row(row, f"{path} (row {count})")
                if relative:
                    audio = _portable_audio(row["audio"], base)
                    if row["id"] == row["audio"]:
                        row["id"] = audio
                    row["audio"] = audio
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def manifest_stats(rows: list[Row], *, check_files: bool = True) -> dict[str, Any]:
    """Counts a reviewer wants before training: rows per source/split, captions, labels, hours, missing files."""
    captions = [c for row in rows for c in row["captions"]]
    labels = Counter(label for row in rows for label in row.get("labels") or [])
    durations = [float(row["duration"]) for row in rows if row.get("duration") is not None]
    stats: dict[str, Any] = {
        "rows": len(rows),
        "sources": dict(Counter(row.get("source", "?") for row in rows).most_common()),
        "splits": dict(Counter(row.get("split", "?") for row in rows).most_common()),
        "captions": len(captions),
        "unique_captions": len(set(captions)),
        "captions_per_row": round(len(captions) / len(rows), 3) if rows else 0.0,
        "labelled_rows": sum(1 for row in rows if row.get("labels")),
        "unique_labels": len(labels),
        "top_labels": dict(labels.most_common(10)),
        "rows_with_duration": len(durations),
        "hours": round(sum(durations) / 3600, 3),
        "mean_seconds": round(sum(durations) / len(durations), 3) if durations else None,
        "max_seconds": round(max(durations), 3) if durations else None,
    }
    if check_files:
        stats["missing_audio"] = sum(1 for row in rows if not Path(row["audio"]).is_file())
    return stats

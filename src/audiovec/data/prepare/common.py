"""Shared helpers for the dataset preparers: finding files, label captions, reading CSVs."""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from audiovec.data.manifest import Row
from audiovec.errors import DataError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mkv", ".mp4", ".aiff"}

# Caption templates for label-only datasets. Several phrasings per clip keep the text tower from keying on
# one fixed frame; the dataset picks one per epoch.
LABEL_TEMPLATES = (
    "{labels}",
    "the sound of {labels}",
    "a recording of {labels}",
    "{labels} can be heard",
    "an audio clip with {labels}",
)


def humanize_label(label: str) -> str:
    """``"Dog_bark"`` / ``"dog_bark"`` -> ``"dog bark"``; keeps display names like "Male speech, man speaking"."""
    text = re.sub(r"[_\s]+", " ", label).strip()
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    return text


def join_words(items: Sequence[str], conjunction: str = "and") -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def label_captions(
    labels: Sequence[str], templates: Sequence[str] = LABEL_TEMPLATES, max_labels: int = 3
) -> list[str]:
    """Captions for a clip from its labels, one per template (duplicates removed, order kept)."""
    names: list[str] = []
    for label in labels:
        name = humanize_label(label)
        if name and name not in names:
            names.append(name)
    if not names:
        return []
    phrase = join_words(names[:max_labels])
    return list(dict.fromkeys(t.format(labels=phrase) for t in templates))


class AudioIndex:
    """Every audio file under a folder, looked up by file name or stem (first found wins, sorted walk)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        for path in sorted(_walk(self.root)):
            self.by_name.setdefault(path.name, path)
            self.by_stem.setdefault(path.stem, path)

    def find(self, *candidates: str) -> Path | None:
        """The first candidate that exists, as a file name (with suffix) or as a stem."""
        for candidate in candidates:
            hit = self.by_name.get(candidate) or self.by_stem.get(candidate)
            if hit is not None:
                return hit
        return None

    def __len__(self) -> int:
        return len(self.by_name)


def _walk(root: Path) -> Iterator[Path]:
    for folder, _dirs, files in os.walk(root, followlinks=True):
        for name in files:
            if Path(name).suffix.lower() in AUDIO_SUFFIXES and not name.startswith("."):
                yield Path(folder) / name


def find_file(src: Path, names: Iterable[str], what: str) -> Path:
    """Find the first of ``names`` (relative paths) under ``src``, else search the tree by base name."""
    names = list(names)
    for name in names:
        if (src / name).is_file():
            return src / name
    bases = {Path(name).name for name in names}
    for folder, _dirs, files in sorted(os.walk(src, followlinks=True)):
        for name in sorted(files):
            if name in bases:
                return Path(folder) / name
    raise DataError(f"{src}: {what} not found (looked for {', '.join(names)})")


def maybe_file(src: Path, names: Iterable[str]) -> Path | None:
    try:
        return find_file(src, names, "")
    except DataError:
        return None


def read_csv(path: Path, *, delimiter: str = ",", required: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of a CSV with a header; checks ``required`` columns. Falls back to latin-1 if not UTF-8."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
    return list(reader)


def audio_duration(path: Path) -> float | None:
    """Seconds from the file header (no decoding); None when the header cannot tell."""
    try:
        import soundfile

        info = soundfile.info(str(path))
        return round(info.frames / info.samplerate, 4) if info.samplerate else None
    except Exception:
        pass
    try:
        import av

        with av.open(str(path)) as container:
            if container.duration is not None:
                return round(container.duration / 1_000_000, 4)
    except Exception:
        return None
    return None


def finish_rows(rows: list[Row], *, durations: bool = True) -> list[Row]:
    """Add ``duration`` (from headers) where missing."""
    if durations:
        for row in rows:
            if "duration" not in row:
                seconds = audio_duration(Path(row["audio"]))
                if seconds is not None:
                    row["duration"] = seconds
    return rows


class MissingAudio:
    """Counts entries whose audio is absent; raises at the first one when ``strict``."""

    def __init__(self, dataset: str, strict: bool) -> None:
        self.dataset = dataset
        self.strict = strict
        self.missing: list[str] = []

    def __call__(self, entry: str, where: str) -> None:
        if self.strict:
            raise DataError(f"{where}: audio for {entry!r} not found")
        self.missing.append(entry)

    def report(self) -> None:
        if self.missing:
            shown = ", ".join(self.missing[:5])
            log.warning(
                "%s: %d listed clip(s) have no audio file and were skipped (e.g. %s)",
                self.dataset,
                len(self.missing),
                shown,
            )


def check_splits(requested: Sequence[str] | None, known: Sequence[str], default: Sequence[str]) -> list[str]:
    """Validate a split selection; ``None`` means the default (training) splits."""
    if not requested:
        return list(default)
    unknown = [s for s in requested if s not in known]
    if unknown:
        raise DataError(f"unknown split(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return list(dict.fromkeys(requested))

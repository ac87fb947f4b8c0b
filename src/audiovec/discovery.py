"""Finding audio files: expand folders into a sorted, de-duplicated list of candidate files."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".flac",
        ".mp3",
        ".ogg",
        ".oga",
        ".opus",
        ".m4a",
        ".aac",
        ".webm",
        ".mka",
        ".aif",
        ".aiff",
        ".wv",
        ".mp4",
    }
)


def find_audio_files(
    paths: Iterable[str | os.PathLike], extensions: Iterable[str] = AUDIO_EXTENSIONS
) -> list[Path]:
    """Files named directly are kept whatever their extension (so a bad one is reported, not ignored);
    folders are walked recursively for files with an audio extension. Order is sorted and stable."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in exts))
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def collect_audio_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Named files as given (bad ones are reported later) plus audio files under named folders, absolute."""
    return list(dict.fromkeys(Path(os.path.abspath(p)) for p in find_audio_files(paths)))

"""Clotho (v2.x): ``clotho_captions_{development,validation,evaluation}.csv`` and one audio folder per split.

Each captions CSV has ``file_name,caption_1..caption_5``; the optional ``clotho_metadata_<split>.csv`` adds
the Freesound ``sound_id`` (kept as ``freesound_id`` for exclusion) and keywords. The evaluation split is a
test set: it is not prepared unless asked for, and must never be mixed into training.
"""

from __future__ import annotations

from pathlib import Path

from audiovec.data.manifest import Row
from audiovec.data.prepare.common import (
    AudioIndex,
    MissingAudio,
    check_splits,
    find_file,
    maybe_file,
    read_csv,
)

SPLITS = ("development", "validation", "evaluation")
DEFAULT_SPLITS = ("development", "validation")
CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, 6))


def _metadata(src: Path, split: str) -> dict[str, dict[str, str]]:
    path = maybe_file(src, [f"clotho_metadata_{split}.csv"])
    if path is None:
        return {}
    return {row["file_name"]: row for row in read_csv(path, required=("file_name",))}


def _audio_roots(src: Path, split: str) -> list[Path]:
    return [
        src / split,
        src / f"clotho_audio_{split}",
        src / "audio" / split,
        src / "clotho_audio_files" / split,
    ]


def prepare(src: Path, splits: list[str] | None = None, strict: bool = False) -> list[Row]:
    """One row per clip with its five human captions."""
    wanted = check_splits(splits, SPLITS, DEFAULT_SPLITS)
    missing = MissingAudio("clotho", strict)
    index: AudioIndex | None = None
    rows: list[Row] = []
    for split in wanted:
        csv_path = find_file(src, [f"clotho_captions_{split}.csv"], f"Clotho {split} captions CSV")
        metadata = _metadata(src, split)
        roots = _audio_roots(src, split)
        for number, entry in enumerate(read_csv(csv_path, required=("file_name", "caption_1")), start=2):
            name = entry["file_name"].strip()
            captions = [entry[c].strip() for c in CAPTION_COLUMNS if (entry.get(c) or "").strip()]
            if not captions:
                missing(name, f"{csv_path}:{number} (no captions)")
                continue
            audio = next((r / name for r in roots if (r / name).is_file()), None)
            if audio is None:
                index = index or AudioIndex(src)
                audio = index.find(name)
            if audio is None:
                missing(name, f"{csv_path}:{number}")
                continue
            row: Row = {
                "id": f"clotho:{name}",
                "audio": str(audio),
                "captions": captions,
                "source": "clotho",
                "split": split,
            }
            meta = metadata.get(name, {})
            if (meta.get("sound_id") or "").strip():
                row["freesound_id"] = meta["sound_id"].strip()
            if (meta.get("keywords") or "").strip():
                row["keywords"] = [k.strip() for k in meta["keywords"].split(";") if k.strip()]
            rows.append(row)
    missing.report()
    return rows

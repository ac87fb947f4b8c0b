"""FSD50K: ``FSD50K.ground_truth/{dev,eval,vocabulary}.csv`` (or ``labels/``) and the clip folders.

``dev.csv`` has ``fname,labels,mids,split`` (split = train/val), ``eval.csv`` has ``fname,labels,mids``;
``labels`` is a comma-separated list of AudioSet class names propagated up the ontology (most specific
first). Audio lives in ``FSD50K.dev_audio/`` and ``FSD50K.eval_audio/`` (or ``clips/{dev,eval}/``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from audiovec.data.manifest import Row
from audiovec.data.prepare.common import (
    AudioIndex,
    MissingAudio,
    check_splits,
    find_file,
    label_captions,
    maybe_file,
    read_csv,
)
from audiovec.errors import DataError

SPLITS = ("train", "val", "eval")
DEFAULT_SPLITS = ("train", "val")

# Broad ancestor classes that the label propagation adds to many clips; they make captions long without
# telling clips apart, so captions skip them when a more specific label is present (labels keep them).
GENERIC = frozenset(
    {
        "Music",
        "Musical_instrument",
        "Animal",
        "Human_voice",
        "Vehicle",
        "Domestic_sounds_and_home_sounds",
        "Domestic_animals_and_pets",
        "Wild_animals",
        "Livestock_and_farm_animals_and_working_animals",
        "Motor_vehicle_(road)",
        "Mechanisms",
        "Natural_sounds",
        "Human_group_actions",
        "Plucked_string_instrument",
        "Percussion",
        "Tools",
        "Liquid",
        "Water",
        "Explosion",
        "Alarm",
    }
)


def _label_dir(src: Path) -> Path:
    return find_file(
        src, ["FSD50K.ground_truth/dev.csv", "labels/dev.csv", "dev.csv"], "FSD50K dev.csv"
    ).parent


def _vocabulary(folder: Path) -> set[str] | None:
    path = maybe_file(folder, ["vocabulary.csv"])
    if path is None:
        return None
    with path.open(encoding="utf-8") as handle:
        return {cells[1] for cells in csv.reader(handle) if len(cells) >= 2}


def _audio_roots(src: Path, part: str) -> list[Path]:
    return [src / f"FSD50K.{part}_audio", src / "clips" / part, src / part, src]


def prepare(src: Path, splits: list[str] | None = None, strict: bool = False) -> list[Row]:
    """One row per clip with all its labels; captions from the most specific labels."""
    wanted = check_splits(splits, SPLITS, DEFAULT_SPLITS)
    folder = _label_dir(src)
    vocabulary = _vocabulary(folder)
    missing = MissingAudio("fsd50k", strict)
    index: AudioIndex | None = None
    rows: list[Row] = []
    for part in ("dev", "eval"):
        part_splits = {"train", "val"} if part == "dev" else {"eval"}
        if not part_splits & set(wanted):
            continue
        required = ("fname", "labels", "split") if part == "dev" else ("fname", "labels")
        csv_path = find_file(folder, [f"{part}.csv"], f"FSD50K {part}.csv")
        roots = _audio_roots(src, part)
        for number, entry in enumerate(read_csv(csv_path, required=required), start=2):
            split = entry["split"].strip() if part == "dev" else "eval"
            if split not in wanted:
                continue
            fname = entry["fname"].strip()
            labels = [label.strip() for label in entry["labels"].split(",") if label.strip()]
            if not labels:
                raise DataError(f"{csv_path}:{number}: clip {fname} has no labels")
            if vocabulary is not None and (unknown := [x for x in labels if x not in vocabulary]):
                raise DataError(f"{csv_path}:{number}: label(s) {unknown} are not in vocabulary.csv")
            audio = next((r / f"{fname}.wav" for r in roots if (r / f"{fname}.wav").is_file()), None)
            if audio is None:
                index = index or AudioIndex(src)
                audio = index.find(f"{fname}.wav", fname)
            if audio is None:
                missing(fname, f"{csv_path}:{number}")
                continue
            specific = [x for x in labels if x not in GENERIC] or labels
            rows.append(
                {
                    "id": f"fsd50k:{fname}",
                    "audio": str(audio),
                    "captions": label_captions(specific),
                    "labels": labels,
                    "source": "fsd50k",
                    "split": split,
                    "freesound_id": fname,
                }
            )
    missing.report()
    return rows

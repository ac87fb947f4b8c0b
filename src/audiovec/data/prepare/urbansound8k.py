"""UrbanSound8K: ``metadata/UrbanSound8K.csv`` and ``audio/fold1..fold10/`` (10 urban sound classes).

It is also an evaluation set in the MTEB audio benchmark: prepare it for training only with a plan for
exclusion (``--exclude``) or with the folds you do not evaluate on.
"""

from __future__ import annotations

from pathlib import Path

from audiovec.data.manifest import Row
from audiovec.data.prepare.common import MissingAudio, check_splits, find_file, label_captions, read_csv

SPLITS = tuple(f"fold{i}" for i in range(1, 11))
DEFAULT_SPLITS = SPLITS
TEMPLATES = (
    "{labels}",
    "the sound of {labels}",
    "{labels} in the city",
    "a recording of {labels} on an urban street",
    "{labels} can be heard outdoors",
)
COLUMNS = ("slice_file_name", "fsID", "fold", "class")


def prepare(src: Path, splits: list[str] | None = None, strict: bool = False) -> list[Row]:
    """One row per slice; captions from the class name; ``freesound_id`` kept for cross-dataset exclusion."""
    wanted = check_splits(splits, SPLITS, DEFAULT_SPLITS)
    csv_path = find_file(src, ["metadata/UrbanSound8K.csv", "UrbanSound8K.csv"], "UrbanSound8K.csv")
    missing = MissingAudio("urbansound8k", strict)
    roots = [src / "audio", src]
    rows: list[Row] = []
    for number, entry in enumerate(read_csv(csv_path, required=COLUMNS), start=2):
        fold = f"fold{entry['fold'].strip()}"
        if fold not in wanted:
            continue
        name = entry["slice_file_name"].strip()
        audio = next((r / fold / name for r in roots if (r / fold / name).is_file()), None)
        if audio is None:
            missing(name, f"{csv_path}:{number}")
            continue
        label = entry["class"].strip()
        row: Row = {
            "id": f"urbansound8k:{Path(name).stem}",
            "audio": str(audio),
            "captions": label_captions([label], TEMPLATES),
            "labels": [label],
            "source": "urbansound8k",
            "split": fold,
            "freesound_id": entry["fsID"].strip(),
        }
        if entry.get("salience"):
            row["salience"] = entry["salience"].strip()
        rows.append(row)
    missing.report()
    return rows
